"""The kills among records, each with what led to it: the story a post-mortem tells.

A kill's story is the records of the same target and pid since that pid was
last seen to end (an earlier kill or target_gone): the snapshots, the samples
and the kill itself. From them come the memory trajectory (RSS and the
cgroup's usage over time), the threshold crossing, and the full snapshot
before the last one, against which the mapping groups' growth is measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from memdoor.events import Event
from memdoor.views.text import number, parse_time, section

Record = Mapping[str, Any]
_FULL = (Event.THRESHOLD_CROSSED, Event.SNAPSHOT)
_TICK = (Event.SAMPLE, Event.BACK_BELOW)
_ENDS = (Event.OOM_KILLED, Event.TARGET_GONE)
# The rate "over the last minute" looks this far back from the last point.
MINUTE_S = 60.0


@dataclass(frozen=True)
class Point:
    """One moment of the trajectory; a figure is None when that moment did not measure it."""

    at: float
    rss_kb: Optional[float]
    cgroup_kb: Optional[float]


def cgroup_usage_kb(cgroup: Mapping[str, Any]) -> Optional[float]:
    """The usage the kernel compares with the limit; the process's own cgroup's otherwise."""
    usage = number(cgroup.get("limit_usage_kb"))
    return usage if usage is not None else number(cgroup.get("usage_kb"))


def _snapshot_point(snapshot: Mapping[str, Any], at: Optional[float]) -> Optional[Point]:
    rss = number(section(snapshot, "memory").get("rss_kb"))
    usage = cgroup_usage_kb(section(snapshot, "cgroup"))
    if at is None or (rss is None and usage is None):
        return None
    return Point(at, rss, usage)


def _tick_point(record: Record, limit_kb: Optional[float]) -> Optional[Point]:
    """The tick's own figure: usage_percent of its measured base, as kB."""
    at, percent = parse_time(record.get("timestamp")), number(record.get("usage_percent"))
    if at is None or percent is None:
        return None
    if record.get("measured_base") == "cgroup" and limit_kb is not None:
        return Point(at, None, percent * limit_kb / 100)
    total = number(section(record, "memory").get("mem_total_kb"))
    rss = number(record.get("rss_kb"))
    if rss is None and total is not None and record.get("measured_base") == "system":
        rss = percent * total / 100
    return None if rss is None else Point(at, rss, None)


def _points_of(record: Record, limit_kb: Optional[float]) -> list[Point]:
    event = record.get("event")
    found: list[Optional[Point]] = []
    if event in _FULL:
        found.append(_snapshot_point(record, parse_time(record.get("taken_at"))))
    elif event in _TICK:
        # A sample's memory and cgroup are its kept snapshot's, age_ms old.
        at, age = (
            parse_time(record.get("timestamp")),
            number(section(record, "counts").get("age_ms")),
        )
        if at is not None and age is not None:
            found.append(_snapshot_point(record, at - age / 1000))
        found.append(_tick_point(record, limit_kb))
    elif event == Event.OOM_KILLED:
        last = section(record, "last_snapshot")
        found.append(_snapshot_point(last, parse_time(last.get("taken_at"))))
    return [point for point in found if point is not None]


def kernel_rss_kb(kill: Mapping[str, Any]) -> Optional[float]:
    """RSS at the kill as the kernel log gives it: anon + file + shmem."""
    parts = [number(kill.get(key)) for key in ("anon_rss_kb", "file_rss_kb", "shmem_rss_kb")]
    return None if None in parts else sum(p for p in parts if p is not None)


@dataclass(frozen=True)
class Growth:
    """How fast the measured figure rose at the end, and when the limit would have come."""

    last_interval_kb_s: Optional[float]
    last_minute_kb_s: Optional[float]
    seconds_to_limit: Optional[float]


@dataclass(frozen=True)
class KillStory:
    number: int
    record: Record
    killed_at: float
    limit_kb: Optional[float]
    mem_total_kb: Optional[float]
    crossed_at: Optional[float]
    points: list[Point]
    earlier_full: Optional[Record]
    history: list[Record] = field(repr=False)

    @property
    def kill(self) -> Mapping[str, Any]:
        return section(self.record, "kill")

    @property
    def last_snapshot(self) -> Mapping[str, Any]:
        return section(self.record, "last_snapshot")

    @property
    def name(self) -> str:
        return str(self.kill.get("name") or section(self.record, "process").get("name") or "?")

    @property
    def threshold_percent(self) -> Optional[float]:
        return number(self.record.get("threshold_percent"))

    @property
    def threshold_base(self) -> str:
        for record in reversed(self.history):
            base = record.get("threshold_base")
            if isinstance(base, str):
                return base
        return "cgroup" if self.limit_kb is not None else "system"

    def thresholds_kb(self) -> dict[str, float]:
        """The threshold as kB of each figure it applies to: 'cgroup' usage, 'system' RSS."""
        percent = self.threshold_percent
        if percent is None:
            return {}
        found = {}
        base = self.threshold_base
        if self.limit_kb is not None and base in ("cgroup", "any"):
            found["cgroup"] = percent * self.limit_kb / 100
        if self.mem_total_kb is not None and (base != "cgroup" or self.limit_kb is None):
            found["system"] = percent * self.mem_total_kb / 100
        return found

    def measured(self) -> list[tuple[float, float]]:
        """(time, kB) of the figure the limit applies to: cgroup usage, else RSS."""
        pick = "cgroup_kb" if self.limit_kb is not None else "rss_kb"
        return [(p.at, getattr(p, pick)) for p in self.points if getattr(p, pick) is not None]

    def growth(self) -> Growth:
        series = self.measured()
        if len(series) < 2:
            return Growth(None, None, None)
        (t0, v0), (t1, v1) = series[-2], series[-1]
        interval = (v1 - v0) / (t1 - t0) if t1 > t0 else None
        start_t, start_v = next((t, v) for t, v in series if t >= t1 - MINUTE_S)
        minute = (v1 - start_v) / (t1 - start_t) if t1 > start_t else None
        ceiling = self.limit_kb if self.limit_kb is not None else self.mem_total_kb
        to_limit = None
        if minute is not None and minute > 0 and ceiling is not None:
            to_limit = max(0.0, (ceiling - v1) / minute)
        return Growth(interval, minute, to_limit)


def _limit_kb(history: Sequence[Record], kill_record: Record) -> Optional[float]:
    for record in [kill_record.get("last_snapshot"), *reversed(history)]:
        limit = number(section(record, "cgroup").get("limit_kb"))
        if limit is not None:
            return limit
    return None


def _mem_total_kb(history: Sequence[Record], kill_record: Record) -> Optional[float]:
    for record in [kill_record.get("last_snapshot"), *reversed(history)]:
        total = number(section(record, "memory").get("mem_total_kb"))
        if total is not None:
            return total
    return None


def _earlier_full(history: Sequence[Record], last: Mapping[str, Any]) -> Optional[Record]:
    """The newest full snapshot taken before the last one."""
    last_at = parse_time(last.get("taken_at"))
    if last_at is None:
        return None
    earlier = [
        r
        for r in history
        if r.get("event") in _FULL and (parse_time(r.get("taken_at")) or last_at) < last_at
    ]
    return earlier[-1] if earlier else None


def _trajectory(points: list[Point], killed_at: Optional[float]) -> list[Point]:
    """The points up to the kill, in time order, each snapshot once.

    Samples repeat their kept snapshot's figures, dated from their age in whole
    milliseconds: a snapshot point whose RSS and cgroup figures were already
    seen is that snapshot again. A tick that came after the kernel's kill time
    is not part of what led to it.
    """
    seen: set[tuple[Optional[float], Optional[float]]] = set()
    kept = []
    for point in sorted(points, key=lambda p: p.at):
        if killed_at is not None and point.at > killed_at:
            continue
        if point.rss_kb is not None and point.cgroup_kb is not None:
            if (point.rss_kb, point.cgroup_kb) in seen:
                continue
            seen.add((point.rss_kb, point.cgroup_kb))
        kept.append(point)
    return kept


def _story(number_: int, history: list[Record], kill_record: Record) -> KillStory:
    killed_at = parse_time(section(kill_record, "kill").get("killed_at")) or parse_time(
        kill_record.get("timestamp")
    )
    limit = _limit_kb(history, kill_record)
    points = _trajectory(
        [p for r in [*history, kill_record] for p in _points_of(r, limit)], killed_at
    )
    crossings = [r for r in history if r.get("event") == Event.THRESHOLD_CROSSED]
    crossed_at = None
    if crossings:
        crossed_at = parse_time(crossings[-1].get("taken_at")) or parse_time(
            crossings[-1].get("timestamp")
        )
    return KillStory(
        number=number_,
        record=kill_record,
        killed_at=killed_at or 0.0,
        limit_kb=limit,
        mem_total_kb=_mem_total_kb(history, kill_record),
        crossed_at=crossed_at,
        points=points,
        earlier_full=_earlier_full(history, section(kill_record, "last_snapshot")),
        history=history,
    )


def find_kills(records: Iterable[Record]) -> list[KillStory]:
    """Every oom_killed record, in order, numbered from 1, each with its story."""
    histories: dict[tuple[Any, Any], list[Record]] = {}
    stories: list[KillStory] = []
    for record in records:
        key = (record.get("target"), record.get("pid"))
        if key[1] is None:
            continue
        event = record.get("event")
        if event == Event.OOM_KILLED:
            stories.append(_story(len(stories) + 1, histories.pop(key, []), record))
        elif event in _ENDS:
            histories.pop(key, None)
        else:
            histories.setdefault(key, []).append(record)
    return stories
