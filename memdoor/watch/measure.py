"""One tick's figure against the target's threshold base, and the cgroup limit it needs.

A tick must stay cheap (hundreds of processes at a one-second interval), so
the system base reads statm and a cached MemTotal, and the cgroup base one
small usage file of the cgroup whose limit applies. Which cgroup that is, and
the limit, is looked up again now and then, since limits change while a
process runs (systemctl set-property, a container update).
"""

from __future__ import annotations

import time
from typing import NamedTuple, Optional, Union

from memdoor.collect.cgroup import (
    CgroupFigures,
    CgroupLimit,
    MemoryCgroup,
    read_cgroup_limit,
    usage_file,
)
from memdoor.collect.identity import ProcessTask
from memdoor.collect.kept import KeptFile
from memdoor.collect.kept_process import KeptProcess
from memdoor.collect.reading import Unreadable, parse_bytes
from memdoor.config import ResolvedTarget
from memdoor.messages import cgroup_usage_line, human_kb, usage_line
from memdoor.procfs.cgroup import parse_int_file
from memdoor.snapshot import Snapshot
from memdoor.system_memory import MemTotal
from memdoor.vocabulary import MeasuredBase, percent_of

# How often a cgroup's limit is looked up again; each full snapshot also refreshes it.
CGROUP_REFRESH = 30.0
# A lookup of the same cgroup this recent serves every tracker that asks (LimitLookups).
LIMIT_SHARED_FOR = 1.0
# Past this many cgroups remembered, the lookups too old to share are let go.
_LOOKUPS_KEPT = 64


class Measure(NamedTuple):
    """One tick's figure: the percent against the threshold, the size measured (RSS, or
    the cgroup's usage) and what it was measured against.

    A tuple, and its line for a person built only when a record needs it: every
    tick of every target makes one.
    """

    percent: float
    kb: int
    base: MeasuredBase
    # What kb is measured against: MemTotal, or the cgroup's limit.
    limit_kb: int
    target: str
    pid: int
    threshold: int
    # On the cgroup base: the path of the cgroup whose limit applies.
    cgroup: Optional[str] = None
    # Under "any": the other base's figure, named in the message.
    other: Optional[Measure] = None

    @property
    def message(self) -> str:
        """The line a person reads."""
        target, pid, kb, threshold = self.target, self.pid, self.kb, self.threshold
        if self.cgroup is None:
            line = usage_line(target, pid, kb, self.percent, threshold)
        else:
            line = cgroup_usage_line(target, pid, self.cgroup, kb, self.limit_kb, threshold)
        return line if self.other is None else f"{line} ({self.other.brief})"

    @property
    def brief(self) -> str:
        """The figure in a few words, for the other base's message under "any"."""
        if self.cgroup is None:
            return f"RSS {self.percent:.1f}% of MemTotal"
        return f"cgroup {self.percent:.1f}% of its limit"


class LimitLookups:
    """Cgroup limit lookups shared by the trackers of processes in one cgroup.

    A service's thousand processes sit in one cgroup, and each tracker looks the
    limit up again every CGROUP_REFRESH seconds (and once when its process is
    adopted): a lookup made in the last LIMIT_SHARED_FOR seconds answers them all,
    a few files read once instead of a thousand times.
    """

    __slots__ = ("_recent",)

    def __init__(self) -> None:
        # directory -> (when it was read, what it said); a failed lookup is not kept.
        self._recent: dict[str, tuple[float, CgroupLimit]] = {}

    def read(self, place: MemoryCgroup, now: float) -> Union[CgroupLimit, Unreadable]:
        """read_cgroup_limit, or its answer for the same cgroup of under a second ago."""
        recent = self._recent.get(place.directory)
        if recent is not None and now - recent[0] < LIMIT_SHARED_FOR:
            return recent[1]
        found = read_cgroup_limit(place)
        if isinstance(found, Unreadable):
            self._recent.pop(place.directory, None)
            return found
        if len(self._recent) >= _LOOKUPS_KEPT:
            self._recent = {
                directory: kept
                for directory, kept in self._recent.items()
                if now - kept[0] < LIMIT_SHARED_FOR
            }
        self._recent[place.directory] = (now, found)
        return found


class LimitTracker:
    """The process's memory cgroup, the cgroup whose limit applies, and its OOM count."""

    __slots__ = ("_lookups", "_usage", "limit", "limit_bytes", "oom_kills", "place", "refreshed")

    def __init__(self, place: MemoryCgroup, lookups: Optional[LimitLookups] = None) -> None:
        """lookups: shared with the other trackers of the daemon; without, each reads."""
        self.place = place
        self._lookups = lookups
        self.limit: Optional[MemoryCgroup] = None
        self.limit_bytes: Optional[int] = None
        self.oom_kills: Optional[int] = None
        self.refreshed = 0.0
        # The usage file of the cgroup whose limit applies, kept open between ticks.
        self._usage: Optional[KeptFile] = None

    def refresh(self) -> Optional[Unreadable]:
        """Look the limit and the kill count up again (not the figures only a snapshot shows)."""
        self.refreshed = now = time.monotonic()
        lookups = self._lookups
        found = read_cgroup_limit(self.place) if lookups is None else lookups.read(self.place, now)
        if isinstance(found, Unreadable):
            return found
        self._follow(found.limit_bytes, found.limit_directory)
        self.oom_kills = found.oom_kills
        return None

    def apply(self, figures: CgroupFigures) -> None:
        """Take the limit and the OOM count from figures a snapshot read."""
        self.refreshed = time.monotonic()
        self._follow(figures.limit_bytes, figures.limit_directory)
        self.oom_kills = figures.oom_counters.get("oom_kill")

    def _follow(self, limit_bytes: Optional[int], directory: Optional[str]) -> None:
        self.limit_bytes = limit_bytes
        if self.limit is not None and self.limit.directory == directory:
            return
        self.close()
        place = self.place
        self.limit = (
            None
            if directory is None
            else MemoryCgroup(place.version, directory, place.top, place.path_of(directory) or "/")
        )

    def read_usage(self) -> Union[int, Unreadable]:
        """The usage of the cgroup whose limit applies (set: the caller checked)."""
        assert self.limit is not None
        if self._usage is None:
            self._usage = KeptFile(usage_file(self.limit))
        data = self._usage.read()
        if isinstance(data, Unreadable):
            return data
        return parse_bytes(self._usage.path, data, parse_int_file)

    def close(self) -> None:
        """Let the kept usage file go (the limit moved, or the watcher ended)."""
        if self._usage is not None:
            self._usage.close()
            self._usage = None

    @property
    def applied_limit(self) -> Optional[tuple[str, int]]:
        """The cgroup path and bytes of the limit that applies, if one does."""
        if self.limit is None or not self.limit_bytes:
            return None
        return self.limit.path, self.limit_bytes

    def take_snapshot(self, snapshot: Snapshot) -> bool:
        """Refresh from a complete snapshot's cgroup figures, if they are of this cgroup."""
        figures = snapshot.cgroup
        if figures is None or figures.place.directory != self.place.directory:
            return False
        self.apply(figures)
        return True

    def stale(self, now: float) -> bool:
        return now - self.refreshed > CGROUP_REFRESH


class ThresholdMeter:
    __slots__ = ("_fallback_told", "files", "mem_total", "pid", "target", "tracker")

    def __init__(
        self,
        target: ResolvedTarget,
        files: KeptProcess,
        mem_total: MemTotal,
    ) -> None:
        self.target = target
        self.pid = files.pid
        self.files = files
        self.mem_total = mem_total
        # Set by the watcher once it found the process's cgroup.
        self.tracker: Optional[LimitTracker] = None
        self._fallback_told = False

    def measure(self, task: ProcessTask) -> Optional[Measure]:
        """The figure on the target's base. "any" takes whichever of RSS against MemTotal
        and the cgroup's usage against its limit is nearer its threshold, since either
        limit can kill; "cgroup" falls back to MemTotal where no cgroup limit applies.
        task: where the tick's liveness check found the process (its RSS is read there).
        None when a read failed: the next tick's identity check tells an exit from that."""
        base = self.target.threshold_base
        if base == "system":
            return self._against_system(task)
        cgroup = self._against_cgroup()
        if base == "cgroup":
            return cgroup or self._against_system(task)
        system = self._against_system(task)
        if cgroup is None or system is None:
            return cgroup or system
        if cgroup.percent >= system.percent:
            return cgroup._replace(other=system)
        return system._replace(other=cgroup)

    def _against_system(self, task: ProcessTask) -> Optional[Measure]:
        rss_kb = self.files.rss_kb(task)
        total_kb = self.mem_total.kb()
        if isinstance(rss_kb, Unreadable) or isinstance(total_kb, Unreadable):
            return None
        target = self.target
        percent = percent_of(rss_kb, total_kb)
        return Measure(percent, rss_kb, "system", total_kb, target.name, self.pid, target.threshold)

    def unreachable(self) -> Optional[str]:
        """Why the threshold cannot be reached before a cgroup limit kills, or None.

        On the system base, a threshold of MemTotal above the cgroup's limit is never
        reached: the cgroup's OOM killer acts first, and no report comes before it.
        """
        total_kb = self.mem_total.kb()
        tracker = self.tracker
        limit = None if tracker is None else tracker.applied_limit
        if self.target.threshold_base != "system" or limit is None:
            return None
        if isinstance(total_kb, Unreadable):
            return None
        path, limit_bytes = limit
        threshold_kb = total_kb * self.target.threshold // 100
        if threshold_kb * 1024 <= limit_bytes:
            return None
        return (
            f"threshold {self.target.threshold}% of MemTotal ({human_kb(threshold_kb)}) is above "
            f"the memory limit of cgroup {path} ({human_kb(limit_bytes // 1024)}): that limit "
            'kills first and nothing is reported before; threshold_base = "any" measures both'
        )

    def fallback_news(self) -> bool:
        """True once, when the target is measured against its cgroup but no limit
        applies there, so measure() uses MemTotal instead (threshold_fallback)."""
        if self.target.threshold_base != "cgroup" or self._fallback_told:
            return False
        tracker = self.tracker
        self._fallback_told = tracker is None or tracker.applied_limit is None
        return self._fallback_told

    def _against_cgroup(self) -> Optional[Measure]:
        tracker = self.tracker
        if tracker is not None and tracker.stale(time.monotonic()):
            tracker.refresh()
        if tracker is None or tracker.limit is None or not tracker.limit_bytes:
            return None  # said once by the watcher (threshold_fallback)
        usage = tracker.read_usage()
        if isinstance(usage, Unreadable):
            return None
        target = self.target
        percent = percent_of(usage, tracker.limit_bytes)
        return Measure(
            percent,
            usage // 1024,
            "cgroup",
            tracker.limit_bytes // 1024,
            target.name,
            self.pid,
            target.threshold,
            tracker.limit.path,
        )
