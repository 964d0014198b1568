"""The kernel log followed for OOM kill reports, kept by victim for the watchers.

The OOM killer names its victim in /dev/kmsg with pid, figures and cgroup. The
kernel log is also the only source that outlives the victim's cgroup: a
service manager removes a unit's cgroup about a millisecond after its last
process died (measured with systemd 252 on cgroup v1, where the v1 counter goes
with the directory, even for a reader holding the file open), long before the
watcher's next tick.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time
from collections.abc import Collection
from typing import Callable, NamedTuple, Optional, Union

from memdoor.collect.reading import Unreadable
from memdoor.oom.kmsg_reader import KmsgLosses, KmsgReader
from memdoor.oom.oomd_message import under
from memdoor.process_text import EscapedText, decode, to_bytes
from memdoor.procfs.kmsg import (
    KERNEL_FACILITY,
    KmsgRecord,
    OomKillReport,
    merge_oom_reports,
    parse_oom_kill,
)
from memdoor.vocabulary import monotonic_usec

# Reports older than this are forgotten: a watcher learns of its process's death
# within a few intervals, and pids recycle.
REPORT_RETENTION_SECONDS = 600.0

Listener = Callable[[OomKillReport], None]

# Lines about one kill are printed within this of each other (the same OOM event).
MERGE_WINDOW_USEC = 10_000_000

# With memory.oom.group = 1 the OOM killer kills its victim, then prints this
# (mm/oom_kill.c, mem_cgroup_print_oom_group(), Linux 4.19 on) and kills every
# other task of the group, one "Killed process" line each, in the same call.
_GROUP = re.compile(
    r"Tasks in (?P<cgroup>.*) are going to be killed due to memory\.oom\.group set", re.DOTALL
)
# A task of the group that was dying already when the killer came to it
# (__oom_kill_process()): a service manager reacting to the first victim
# (systemd's OOMPolicy=kill) can get there first while the console is slow.
_EXITING_MEMBER = re.compile(
    r".*: OOM victim (?P<pid>\d+) \(.*\) is already exiting\. Skip", re.DOTALL
)
# The kernel kills a group's tasks one after the other under the OOM lock, and
# prints each victim's line after the console took every line before it: on a
# slow console (emulated or IPMI serial at 115200 baud) seconds after the
# announcement. So a kill line joins the group within this window unless
# another OOM event began meanwhile: its "invoked oom-killer" header, or a
# constraint line naming a cgroup outside the group, ends the group. (A kill
# whose header the kernel's rate limit dropped cannot be told apart.)
GROUP_WINDOW_USEC = 10_000_000
_OOM_EVENT_START = "invoked oom-killer"
# A group kill's lines are taken to be all in when none came for this long. The
# kernel prints them in one call, but the thread printing them also writes the
# OOM report before them to the console: on a serial console (a VM, a server's
# IPMI console at 115200 baud) the next victim's line can come a second later.
GROUP_QUIET_USEC = 1_000_000
# A process whose own line never came is placed in a group kill of its cgroup
# announced this recently.
GROUP_RECENT_USEC = 10_000_000


@dataclasses.dataclass
class GroupKill:
    """One memory.oom.group kill: the cgroup the kernel names and the pids it killed."""

    cgroup: str
    usec_since_boot: int
    pids: list[int] = dataclasses.field(default_factory=list)
    # The kernel's time of the newest line that joined it.
    newest_usec: int = 0
    # time.monotonic() when memdoor read that line (or the announcement).
    newest_read: float = dataclasses.field(default_factory=time.monotonic)

    def took(self, pid: int, usec_since_boot: int) -> None:
        """A line of the kill named pid: killed, or dying already."""
        if pid not in self.pids:
            self.pids.append(pid)
        self.newest_usec = max(self.newest_usec, usec_since_boot)
        self.newest_read = time.monotonic()


def parse_group_kill(record: KmsgRecord) -> Optional[GroupKill]:
    if record.facility != KERNEL_FACILITY:
        return None
    match = _GROUP.fullmatch(record.message)
    if match is None:
        return None
    cgroup: str = match.group("cgroup")
    if isinstance(record.message, EscapedText):
        # Decoded on its own bytes, as the report's task_memcg is (memdoor.procfs.kmsg).
        cgroup = decode(to_bytes(EscapedText(cgroup)))
    return GroupKill(cgroup, record.usec_since_boot)


# The inode number of /proc/PID/ns/pid for the initial pid namespace
# (PROC_PID_INIT_INO), fixed since Linux 3.8.
INITIAL_PID_NAMESPACE_INODE = 0xEFFFFFFC


def in_initial_pid_namespace() -> bool:
    """Whether our pids are the ones the kernel log prints.

    The OOM killer names its victim by its pid in the initial pid namespace, so
    in a container (a systemd in its own pid namespace, as in tests/system) the
    watched process has another pid there. When this cannot be told, pids are
    trusted, which is right on every host without pid namespaces.
    """
    try:
        return os.stat("/proc/self/ns/pid").st_ino == INITIAL_PID_NAMESPACE_INODE
    except OSError:
        return True


def same_cgroup(kernel_path: str, our_path: str) -> bool:
    """The kernel prints a cgroup from its hierarchy's root; /proc/PID/cgroup inside a
    cgroup namespace shows the part below the namespace's root, i.e. the tail."""
    return kernel_path == our_path or (our_path != "/" and kernel_path.endswith(our_path))


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


class KeptReport(NamedTuple):
    report: OomKillReport
    # time.monotonic() when it was read, to forget it after REPORT_RETENTION_SECONDS.
    seen: float
    # Its place in the order reports were read (the newer line of a merged one).
    serial: int


class KernelLog:
    """Follows /dev/kmsg from the event loop and keeps recent OOM kill reports by pid."""

    def __init__(self, path: str = "/dev/kmsg") -> None:
        self.path = path
        self.reader: Union[KmsgReader, Unreadable, None] = None
        self.reports: dict[int, KeptReport] = {}
        # The serial of the newest report read (by the loop, as lines arrive).
        # Every report up to it was logged before now: a process read afterwards
        # and found neither dying nor with SIGKILL pending was not the victim of
        # any of them, since the OOM killer sends SIGKILL before it logs a kill.
        self.serial = 0
        self.listeners: list[Listener] = []
        self.pids_are_ours = in_initial_pid_namespace()
        # The newest group kill, and each recent group kill by the pids it took.
        self._group: Optional[GroupKill] = None
        self.groups: dict[int, GroupKill] = {}

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

    def take_losses(self) -> Optional[KmsgLosses]:
        """Records lost since the last call (ring buffer wrapped, unparsable), or None."""
        return self.reader.take_losses() if isinstance(self.reader, KmsgReader) else None

    def drain(self) -> None:
        """Read what arrived; called by the loop, and before any verdict so none is missed."""
        if not isinstance(self.reader, KmsgReader):
            return
        now = time.monotonic()
        for record in self.reader.read_available():
            report = parse_oom_kill(record)
            if report is not None:
                self.keep(report, now)
            else:
                self.group_announced(record)
        self.reports = {
            pid: kept
            for pid, kept in self.reports.items()
            if now - kept.seen < REPORT_RETENTION_SECONDS
        }
        self.groups = {pid: group for pid, group in self.groups.items() if pid in self.reports}

    def group_announced(self, record: KmsgRecord) -> None:
        """A line that is no kill report: a group kill's announcement begins a group
        (its first victim was logged just before), another OOM event's header ends it."""
        if record.facility == KERNEL_FACILITY and _OOM_EVENT_START in record.message:
            self._group = None
            return
        exiting = _EXITING_MEMBER.fullmatch(record.message)
        group = self._group
        if exiting is not None and group is not None and record.facility == KERNEL_FACILITY:
            if abs(record.usec_since_boot - group.usec_since_boot) < GROUP_WINDOW_USEC:
                group.took(int(exiting.group("pid")), record.usec_since_boot)
            return
        group = parse_group_kill(record)
        if group is None:
            return
        self._group = group
        newest = max(self.reports.values(), key=lambda kept: kept.serial, default=None)
        if newest is not None:
            self._join_group(newest.report)

    def _join_group(self, report: OomKillReport) -> None:
        group = self._group
        if group is None or not report.killed:
            return
        if abs(report.usec_since_boot - group.usec_since_boot) >= GROUP_WINDOW_USEC:
            return
        if report.task_memcg is not None and not under(report.task_memcg, group.cgroup):
            self._group = None
            return
        group.took(report.pid, report.usec_since_boot)
        self.groups[report.pid] = group

    def group_in(self, cgroup_path: str) -> Optional[GroupKill]:
        """The newest group kill of this cgroup announced lately: for a process the
        counter says was killed but whose own line has not come."""
        self.drain()
        group = self._group
        if group is None or monotonic_usec() - group.usec_since_boot > GROUP_RECENT_USEC:
            return None
        return group if same_cgroup(group.cgroup, cgroup_path) else None

    def group_settled(self, group: GroupKill) -> bool:
        """Whether every line of a group kill is in: none came for GROUP_QUIET_USEC."""
        self.drain()
        newest = max(group.usec_since_boot, group.newest_usec)
        return monotonic_usec() - newest >= GROUP_QUIET_USEC

    def keep(self, report: OomKillReport, now: float) -> None:
        """File one parsed line, merged with the other lines of the same kill."""
        known = self.reports.get(report.pid)
        if (
            known is not None
            and abs(known.report.usec_since_boot - report.usec_since_boot) < MERGE_WINDOW_USEC
        ):
            report = merge_oom_reports(known.report, report)
        self.serial += 1
        self.reports[report.pid] = KeptReport(report, now, self.serial)
        self._join_group(report)
        if report.killed:
            for listener in list(self.listeners):
                listener(report)

    def kill_of(
        self,
        pid: int,
        started_usec: int,
        name: str,
        cgroup_path: Optional[str],
        alive_after: int = 0,
        threads: Collection[int] = (),
    ) -> Optional[OomKillReport]:
        """The kill report of this process, if the kill came after the process started.

        threads are the ids of threads the process was read through since its
        leader exited: the "Killed process" line then names the thread the killer
        found the memory on, while the constraint line names the process itself,
        so the two are joined here.

        Comparing with the start time keeps a report about an earlier process that
        had the same pid from being pinned on this one. Outside the initial pid
        namespace the report's pid is not ours, so the kill is matched by the
        process's name (the kernel's comm, as the log prints it) and memory cgroup
        instead, only among reports read after alive_after (the serial when
        the process was last seen alive and not yet sent SIGKILL), so a kill of
        a same-named process in the same cgroup is not pinned on this one when
        it exits later; and it is taken out of the kept reports so that another
        watched process of the same name is not given the same kill. Without
        the constraint line (rate-limited with the OOM header) the log does not
        name the cgroup, and such a kill cannot be matched there.
        """
        self.drain()
        if self.pids_are_ours:
            for victim in (pid, *threads):
                kept = self.reports.get(victim)
                report = None if kept is None else kept.report
                if report is not None and report.killed and report.usec_since_boot >= started_usec:
                    return self._joined(pid, report)
            return None
        if cgroup_path is None:
            return None
        for victim, (report, _seen, serial) in self.reports.items():
            if (
                report.killed
                and serial > alive_after
                and report.name == name
                and report.usec_since_boot >= started_usec
                and report.task_memcg is not None
                and same_cgroup(report.task_memcg, cgroup_path)
            ):
                del self.reports[victim]
                return report
        return None

    def _joined(self, pid: int, killed: OomKillReport) -> OomKillReport:
        """A thread's kill with the constraint line the kernel printed for its process."""
        summary = self.reports.get(pid)
        if killed.pid == pid or summary is None:
            return killed
        if abs(summary.report.usec_since_boot - killed.usec_since_boot) >= MERGE_WINDOW_USEC:
            return killed
        return merge_oom_reports(dataclasses.replace(summary.report, pid=killed.pid), killed)
