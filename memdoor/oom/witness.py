"""Whether the OOM killer took one watched process: the one place that decides.

Its watcher tells it when the process was last seen alive and what the cgroup's
OOM counter read while it lived; the witness answers two questions: may a
snapshot just taken overlap the kill (then it must not replace the complete one
before it), and, once the process is gone, was it an OOM kill, with what
evidence (a Kill) or not (None: it just exited).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from typing import Optional

from memdoor.collect.cgroup import MemoryCgroup
from memdoor.collect.identity import CLOCK_TICKS, ProcessIdentity, ProcessTask
from memdoor.oom.counters import CgroupKillCounters, CounterRise, ParentKillCounts
from memdoor.oom.kernel_log import KernelLog, boottime_offset_usec
from memdoor.oom.kill import Kill
from memdoor.oom.nearby import NeighbourKillCounter
from memdoor.oom.oomd import CgroupOomdMarks, OomdHub, OomdKill
from memdoor.procfs.kmsg import OomKillReport

# A process's first live thread changes only when that thread exits; the kill
# names the one that was first then, among the latest ones read through.
THREADS_KEPT = 8
# How long a verdict waits for the rest of its evidence: the kernel's line when
# only the counter told (the kernel sends SIGKILL before it logs the kill, and a
# small victim can be gone first), the other lines of a memory.oom.group kill,
# oomd's line with its reason. Each comes within milliseconds on a real host;
# this is for a loaded or emulated one. The process is gone: only the record waits.
SETTLE_SECONDS = 2.0
SETTLE_STEP_SECONDS = 0.05


class KillWitness:
    __slots__ = (
        "_alive_at_serial",
        "_identity",
        "_kernel_log",
        "_neighbour_kills",
        "_oomd",
        "_oomd_kill",
        "_parents",
        "_report",
        "_rise",
        "_threads",
        "cgroup",
        "counters",
        "oomd_marks",
    )

    def __init__(
        self,
        identity: ProcessIdentity,
        kernel_log: KernelLog,
        neighbour_kills: NeighbourKillCounter,
        oomd: Optional[OomdHub] = None,
        parents: Optional[ParentKillCounts] = None,
    ) -> None:
        """parents: the v2 parents' kill counts the daemon's watchers share."""
        self._identity = identity
        self._kernel_log = kernel_log
        self._neighbour_kills = neighbour_kills
        self._oomd = oomd
        self._parents = parents
        # systemd-oomd's marks on the cgroup (v2 only: oomd needs the unified hierarchy).
        self.oomd_marks: Optional[CgroupOomdMarks] = None
        # The process's memory cgroup and its counters, once its watcher found it.
        self.cgroup: Optional[MemoryCgroup] = None
        self.counters: Optional[CgroupKillCounters] = None
        # The kernel log's serial when the process was last seen alive and not yet
        # sent SIGKILL: no kill report up to it can be this process's.
        self._alive_at_serial = 0
        # The latest threads it was read through after its leader exited; made for the
        # few processes whose leader exits (a deque is 600 bytes, a thousand targets).
        self._threads: Optional[deque[int]] = None
        self._report: Optional[OomKillReport] = None
        # What the cgroup said when the process was found gone (gone()).
        self._rise: Optional[CounterRise] = None
        self._oomd_kill: Optional[OomdKill] = None

    def watch_cgroup(self, cgroup: MemoryCgroup, oom_kills: Optional[int]) -> None:
        """The process's cgroup and its first counter reading; without the kernel log,
        neighbours' kills there are counted from that reading on."""
        self.cgroup = cgroup
        self.counters = CgroupKillCounters(cgroup, self._parents)
        self.counters.alive(oom_kills)
        if self._kernel_log.unavailable is not None and oom_kills is not None:
            self._neighbour_kills.track(cgroup.directory, oom_kills)
        if self._oomd is not None and cgroup.version == 2:
            self.oomd_marks = CgroupOomdMarks(self._oomd, cgroup.directory, cgroup.path)

    def close(self) -> None:
        """The watcher ended: stop following the cgroup's oomd marks."""
        if self.oomd_marks is not None:
            self.oomd_marks.close()

    def watermark(self) -> int:
        """Read before looking at the process: the serial a later seen() stands for."""
        return self._kernel_log.serial

    def seen(self, task: ProcessTask, watermark: int, oom_kills: Optional[int]) -> None:
        """The process was found through task: alive at watermark unless SIGKILL is
        pending, its cgroup then counting oom_kills (its tracker's latest reading), so
        no kill until then was this process's. A thread read through is kept, as the
        kernel log names a process whose leader exited by the thread the killer found
        the memory on."""
        if task.tid != self._identity.pid:
            threads = self._threads
            if threads is None:
                threads = self._threads = deque(maxlen=THREADS_KEPT)
            if task.tid not in threads:
                threads.append(task.tid)
        if task.stat.kill_pending:
            return
        self._alive_at_serial = watermark
        if self.counters is not None:
            self.counters.alive(oom_kills)

    def counter_changed(self) -> bool:
        """The cgroup's counter file signalled (from the event loop): read it before
        the cgroup can be removed. True when its OOM kill count moved."""
        return self.counters is not None and self.counters.changed()

    def report(self) -> Optional[OomKillReport]:
        """This process's OOM kill in the kernel log, once it is there. Remembered: outside
        the initial pid namespace the kernel log hands each report out only once."""
        if self._report is None:
            identity = self._identity
            started_usec = identity.start_ticks * 1_000_000 // CLOCK_TICKS - boottime_offset_usec()
            self._report = self._kernel_log.kill_of(
                identity.pid,
                started_usec,
                identity.name,
                None if self.cgroup is None else self.cgroup.path,
                self._alive_at_serial,
                () if self._threads is None else tuple(self._threads),
            )
        return self._report

    def may_overlap_kill(self, snapshot_gone: bool) -> bool:
        """Whether the process was OOM-killed or exited before a snapshot's reads were done.

        Reads that overlap the exit come back torn (no VmRSS once the mm is gone, the
        root cgroup, smaps cut short, the OOM counter already raised), so such a
        snapshot must not displace the complete one before it as the evidence, nor
        the counter the verdict compares with. The kernel logs an OOM kill before the
        victim starts to exit, so a report already in the log means they may overlap.
        Outside the initial pid namespace a kill is matched by name and cgroup,
        which while the process lives could claim a same-named sibling's kill.
        """
        if snapshot_gone:
            return True
        return self._kernel_log.pids_are_ours and self.report() is not None

    def gone(self) -> None:
        """The process is gone: read what its cgroup says at once, before it goes."""
        self._rise = None if self.counters is None else self.counters.at_exit()
        self._oomd_kill = None if self.oomd_marks is None else self.oomd_marks.at_exit()

    async def settle(self) -> None:
        """Wait, at most SETTLE_SECONDS, for the logs that follow a kill: the kernel's
        line when only the counter told, the rest of a group kill, oomd's reason."""
        deadline = time.monotonic() + SETTLE_SECONDS
        marks, rise = self.oomd_marks, self._rise
        while time.monotonic() < deadline:
            oomd_pending = False
            if marks is not None and self._oomd_kill is not None:
                self._oomd_kill = marks.with_reason(self._oomd_kill)
                oomd_pending = marks.awaits_reason(self._oomd_kill)
            if not oomd_pending and not self._kernel_pending(rise is not None and rise.rose):
                return
            await asyncio.sleep(SETTLE_STEP_SECONDS)

    def verdict(self) -> Optional[Kill]:
        """After gone(): its OOM kill (by the kernel or systemd-oomd) with every source
        that told, or None."""
        report, rise, cgroup = self.report(), self._rise, self.cgroup
        if report is not None:
            group = self._kernel_log.groups.get(report.pid)
        elif rise is not None and rise.rose and cgroup is not None:
            group = self._kernel_log.group_in(cgroup.path)
        else:
            group = None
        if rise is None:
            kill = Kill(report, oomd=self._oomd_kill, group=group)
        else:
            kill = Kill(report, rise.before, rise.after, rise.file, self._oomd_kill, group)
        if not kill.sources:
            return None
        if rise is not None and rise.before is not None and rise.after is not None:
            # So that the rise is not also reported as a neighbour's kill.
            self._neighbour_kills.claim(
                os.path.dirname(rise.file or ""), max(0, rise.after - rise.before)
            )
        return kill

    def _kernel_pending(self, counter_rose: bool) -> bool:
        """Whether the kernel log may still add to this kill: its line, when the counter
        told of a kill it has not logged yet, or the later lines of its group kill."""
        kernel_log = self._kernel_log
        if kernel_log.unavailable is not None or kernel_log.reader is None:
            return False
        report = self.report()
        if report is None:
            return counter_rose
        group = kernel_log.groups.get(report.pid)
        return group is not None and not kernel_log.group_settled(group)
