"""One tick's figure against the target's threshold base, and the cgroup limit it needs.

A tick must stay cheap (hundreds of processes at a one-second interval), so
the system base reads statm and a cached MemTotal, and the cgroup base one
small usage file of the cgroup whose limit applies. Which cgroup that is, and
the limit, is looked up again now and then, since limits change while a
process runs (systemctl set-property, a container update).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Optional

from memdoor.collect.cgroup import (
    CgroupFigures,
    MemoryCgroup,
    read_cgroup_memory,
    read_usage_bytes,
)
from memdoor.collect.identity import ProcessTask
from memdoor.collect.memory import read_rss_kb
from memdoor.collect.reading import Unreadable
from memdoor.config import ResolvedTarget
from memdoor.messages import cgroup_usage_line, human_kb, usage_line
from memdoor.snapshot import Snapshot
from memdoor.system_memory import MemTotal
from memdoor.vocabulary import MeasuredBase, percent_of

# How often a cgroup's limit is looked up again; each full snapshot also refreshes it.
CGROUP_REFRESH = 30.0


@dataclass(frozen=True)
class Measure:
    """One tick's figure: the percent against the threshold, the line a person reads,
    the size measured (RSS, or the cgroup's usage) and what it was measured against."""

    percent: float
    message: str
    kb: int
    base: MeasuredBase
    # The figure in a few words, for the other base's message under "any".
    brief: str
    # What kb is measured against: MemTotal, or the cgroup's limit.
    limit_kb: int


class LimitTracker:
    """The process's memory cgroup, the cgroup whose limit applies, and its OOM count."""

    def __init__(self, place: MemoryCgroup) -> None:
        self.place = place
        self.limit: Optional[MemoryCgroup] = None
        self.limit_bytes: Optional[int] = None
        self.oom_kills: Optional[int] = None
        self.refreshed = 0.0

    def refresh(self) -> Optional[Unreadable]:
        figures = read_cgroup_memory(self.place)
        if isinstance(figures, Unreadable):
            self.refreshed = time.monotonic()
            return figures
        self.apply(figures)
        return None

    def apply(self, figures: CgroupFigures) -> None:
        """Take the limit and the OOM count from figures read by refresh or by a snapshot."""
        self.refreshed = time.monotonic()
        self.limit_bytes = figures.limit_bytes
        self.limit = (
            None
            if figures.limit_directory is None
            else MemoryCgroup(
                self.place.version,
                figures.limit_directory,
                self.place.top,
                figures.limit_path or "/",
            )
        )
        self.oom_kills = figures.oom_counters.get("oom_kill")

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
    def __init__(
        self,
        target: ResolvedTarget,
        pid: int,
        mem_total: MemTotal,
    ) -> None:
        self.target = target
        self.pid = pid
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
        nearer, other = (cgroup, system) if cgroup.percent >= system.percent else (system, cgroup)
        return dataclasses.replace(nearer, message=f"{nearer.message} ({other.brief})")

    def _against_system(self, task: ProcessTask) -> Optional[Measure]:
        rss_kb = read_rss_kb(task.tid, task.proc)
        total_kb = self.mem_total.kb()
        if isinstance(rss_kb, Unreadable) or isinstance(total_kb, Unreadable):
            return None
        percent = percent_of(rss_kb, total_kb)
        line = usage_line(self.target.name, self.pid, rss_kb, percent, self.target.threshold)
        brief = f"RSS {percent:.1f}% of MemTotal"
        return Measure(percent, line, rss_kb, "system", brief, total_kb)

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
        usage = read_usage_bytes(tracker.limit)
        if isinstance(usage, Unreadable):
            return None
        target = self.target
        line = cgroup_usage_line(
            target.name,
            self.pid,
            tracker.limit.path,
            usage // 1024,
            tracker.limit_bytes // 1024,
            target.threshold,
        )
        percent = percent_of(usage, tracker.limit_bytes)
        brief = f"cgroup {percent:.1f}% of its limit"
        return Measure(percent, line, usage // 1024, "cgroup", brief, tracker.limit_bytes // 1024)
