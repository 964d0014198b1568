"""How fast a watched process's measured figure grows, and when it would reach its limit.

A person reading a sample at 3 a.m. asks "how fast, and how long until it is
killed?". Every tick already measures the figure the threshold is against
(RSS, or the cgroup's usage), so the watcher hands it here: the last tick and a
minute of points a few seconds apart, per base (under threshold_base "any" the
measured base can change from one tick to the next, and RSS and cgroup usage
are different figures). A tick costs an append and, now and then, a popleft; the
rates are worked out only when a record is written.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import Any, Optional

from memdoor.vocabulary import MeasuredBase

# The span of the longer rate.
MINUTE_S = 60.0
# Points for the minute's rate are kept at least this far apart: at most 13 per base
# however short the interval, and the rate still spans 55 to 60 seconds.
SPACING_S = 5.0


@dataclass(frozen=True)
class Growth:
    """Rates in kB/s (None until two ticks were measured) and the estimated seconds to
    the limit at the minute's rate (None when the figure is not growing)."""

    last_interval_kb_per_s: Optional[float]
    last_interval_s: Optional[float]
    last_minute_kb_per_s: Optional[float]
    last_minute_s: Optional[float]
    limit_kb: int
    seconds_to_limit: Optional[float]

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: Optional[float], digits: int) -> Optional[float]:
            return None if value is None else round(value, digits)

        return {
            "last_interval_kb_per_s": rounded(self.last_interval_kb_per_s, 1),
            "last_interval_s": rounded(self.last_interval_s, 3),
            "last_minute_kb_per_s": rounded(self.last_minute_kb_per_s, 1),
            "last_minute_s": rounded(self.last_minute_s, 3),
            "limit_kb": self.limit_kb,
            "seconds_to_limit": rounded(self.seconds_to_limit, 1),
        }


class _Ring:
    """One base's points: the tick before the last, the last, and the minute's.

    The minute's points, at most 13, are doubles in one array, flat (at, kb, at,
    kb...): 16 bytes a point where a tuple of two numbers took over 100, and a
    thousand targets each keep one. A size in kB is a whole number far below 2**53,
    exact as a double, so the rates are the same. The last two ticks lie in fields
    of their own, where every tick made a tuple of two that the next one kept.
    """

    __slots__ = ("last_at", "last_kb", "minute", "previous_at", "previous_kb")

    def __init__(self) -> None:
        self.previous_at: Optional[float] = None
        self.previous_kb = 0
        self.last_at: Optional[float] = None
        self.last_kb = 0
        self.minute = array("d")

    def add(self, at: float, kb: int) -> None:
        self.previous_at, self.previous_kb = self.last_at, self.last_kb
        self.last_at, self.last_kb = at, kb
        minute = self.minute
        if not minute or at - minute[-2] >= SPACING_S:
            minute.append(at)
            minute.append(kb)
        while at - minute[0] > MINUTE_S:
            del minute[:2]

    @property
    def previous(self) -> Optional[tuple[float, float]]:
        """The tick before the last."""
        at = self.previous_at
        return None if at is None else (at, self.previous_kb)

    @property
    def last(self) -> Optional[tuple[float, float]]:
        at = self.last_at
        return None if at is None else (at, self.last_kb)

    @property
    def oldest(self) -> Optional[tuple[float, float]]:
        """The minute's first point."""
        minute = self.minute
        return (minute[0], minute[1]) if minute else None


def _rate(start: Optional[tuple[float, float]], end: tuple[float, float]) -> Optional[float]:
    if start is None or end[0] <= start[0]:
        return None
    return (end[1] - start[1]) / (end[0] - start[0])


class GrowthRing:
    """The watcher's measured figures, per base, over the last minute: a field for
    each of the two bases, its ring made when the base is first measured (where a
    dict of them took about 200 bytes for one)."""

    __slots__ = ("_cgroup", "_system")

    def __init__(self) -> None:
        self._system: Optional[_Ring] = None
        self._cgroup: Optional[_Ring] = None

    def _ring(self, base: MeasuredBase) -> Optional[_Ring]:
        return self._system if base == "system" else self._cgroup

    def add(self, base: MeasuredBase, at: float, kb: int) -> None:
        """One tick's figure; at is time.monotonic()."""
        ring = self._ring(base)
        if ring is None:
            ring = _Ring()
            if base == "system":
                self._system = ring
            else:
                self._cgroup = ring
        ring.add(at, kb)

    def growth(self, base: MeasuredBase, limit_kb: int) -> Growth:
        """The rates of base's figure and the time until it reaches limit_kb."""
        ring = self._ring(base)
        if ring is None or ring.last is None:
            return Growth(None, None, None, None, limit_kb, None)
        last = ring.last
        interval = _rate(ring.previous, last)
        oldest = ring.oldest
        minute = _rate(oldest, last)
        to_limit = None
        if minute is not None and minute > 0:
            to_limit = max(0.0, (limit_kb - last[1]) / minute)
        return Growth(
            interval,
            None if ring.previous is None else last[0] - ring.previous[0],
            minute,
            None if minute is None or oldest is None else last[0] - oldest[0],
            limit_kb,
            to_limit,
        )
