"""What the kernel says about OOM kills, gathered for the watchers.

Two sources, each optional: the kernel log (/dev/kmsg: the OOM killer names
its victim with pid, figures and cgroup), and the victim's cgroup OOM counter
(v2 memory.events oom_kill, v1 memory.oom_control oom_kill). kmsg is the only
one that names the pid; a counter that rose while the process died is strong
evidence but not proof, and the record says which source told.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional, Union

from memdoor.collect.kmsg import KmsgReader
from memdoor.collect.reading import Unreadable
from memdoor.procfs.kmsg import OomKillReport, merge_oom_reports, parse_oom_kill
from memdoor.render.snapshot_dict import rfc3339

# Reports older than this are forgotten: a watcher learns of its process's death
# within a few intervals, and pids recycle.
REPORT_RETENTION_SECONDS = 600.0

Listener = Callable[[OomKillReport], None]


def monotonic_usec() -> int:
    """The clock /dev/kmsg timestamps use (local_clock: monotonic since boot)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def boottime_offset_usec() -> int:
    """How far CLOCK_BOOTTIME (process start times) runs ahead of CLOCK_MONOTONIC (kmsg).

    They differ by the time the machine spent suspended; comparing a process
    start with a kernel log time needs them on one clock.
    """
    return (
        time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    ) // 1000


def wall_time_of(usec_since_boot: int) -> float:
    """Epoch seconds of a kernel log timestamp."""
    return time.time() - (monotonic_usec() - usec_since_boot) / 1_000_000


class KernelLog:
    """Follows /dev/kmsg from the event loop and keeps recent OOM kill reports by pid."""

    def __init__(self, path: str = "/dev/kmsg") -> None:
        self.path = path
        self.reader: Union[KmsgReader, Unreadable, None] = None
        self.reports: dict[int, tuple[OomKillReport, float]] = {}
        self.listeners: list[Listener] = []

    @property
    def unavailable(self) -> Optional[Unreadable]:
        return self.reader if isinstance(self.reader, Unreadable) else None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.reader = KmsgReader.open(self.path)
        if isinstance(self.reader, KmsgReader):
            loop.add_reader(self.reader.fileno(), self.drain)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        if isinstance(self.reader, KmsgReader):
            loop.remove_reader(self.reader.fileno())
            self.reader.close()
        self.reader = None

    def drain(self) -> None:
        """Read what arrived; called by the loop, and before any verdict so none is missed."""
        if not isinstance(self.reader, KmsgReader):
            return
        now = time.monotonic()
        for record in self.reader.read_available():
            report = parse_oom_kill(record)
            if report is None:
                continue
            known = self.reports.get(report.pid)
            if known is not None and abs(known[0].usec_since_boot - report.usec_since_boot) < 10**7:
                report = merge_oom_reports(known[0], report)
            self.reports[report.pid] = (report, now)
            if report.killed:
                for listener in list(self.listeners):
                    listener(report)
        self.reports = {
            pid: kept
            for pid, kept in self.reports.items()
            if now - kept[1] < REPORT_RETENTION_SECONDS
        }

    def kill_of(self, pid: int, started_usec: int) -> Optional[OomKillReport]:
        """The kill report of this pid, if the kill came after the process started.

        Comparing with the start time keeps a report about an earlier process that
        had the same pid from being pinned on this one.
        """
        self.drain()
        kept = self.reports.get(pid)
        if kept is None or not kept[0].killed or kept[0].usec_since_boot < started_usec:
            return None
        return kept[0]

    def recent_kills(self) -> Iterator[OomKillReport]:
        return (report for report, _seen in self.reports.values() if report.killed)


# What the kernel log says about the victim, copied into the record as is.
KMSG_FIELDS = (
    "name",
    "constraint",
    "cgroup_kill",
    "oom_memcg",
    "task_memcg",
    "total_vm_kb",
    "anon_rss_kb",
    "file_rss_kb",
    "shmem_rss_kb",
    "pgtables_kb",
    "oom_score_adj",
    "uid",
)


def kill_dict(
    report: Optional[OomKillReport],
    counter_before: Optional[int],
    counter_after: Optional[int],
    counter_source: Optional[str],
) -> dict[str, Any]:
    """The `kill` section of an oom_killed record: every source, and which ones told."""
    counter_rose = (
        counter_before is not None and counter_after is not None and counter_after > counter_before
    )
    sources = (["kmsg"] if report else []) + (["cgroup_counter"] if counter_rose else [])
    data: dict[str, Any] = {
        "sources": sources,
        "killed_at": rfc3339(wall_time_of(report.usec_since_boot)) if report else None,
    }
    data.update({name: getattr(report, name) if report else None for name in KMSG_FIELDS})
    data.update(
        cgroup_oom_kill_before=counter_before,
        cgroup_oom_kill_after=counter_after,
        cgroup_counter_file=counter_source,
    )
    return data
