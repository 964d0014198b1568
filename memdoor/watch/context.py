"""What the watchers of the daemon share, and what the watchers of one target share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from memdoor.collect.cgroup import CgroupMounts
from memdoor.config import ResolvedTarget
from memdoor.emitter import TargetRecords
from memdoor.oom.counters import ParentKillCounts
from memdoor.oom.group import GroupKills
from memdoor.oom.kernel_log import KernelLog
from memdoor.oom.nearby import NeighbourKillCounter
from memdoor.oom.oomd import OomdHub
from memdoor.pidfile_changes import PidfileChanges
from memdoor.pressure import PressureHub
from memdoor.system_memory import MemTotal
from memdoor.watch.measure import LimitLookups
from memdoor.watch.snapshot_slots import SnapshotSlots


@dataclass
class Services:
    """What every watcher of the daemon shares."""

    mem_total: MemTotal
    cgroups: Optional[CgroupMounts]
    kernel_log: KernelLog
    pressure: Optional[PressureHub]
    proc: str = "/proc"
    # Told of each watched process's counted OOM kill, so it is not a neighbour's.
    neighbour_kills: NeighbourKillCounter = field(default_factory=NeighbourKillCounter)
    # systemd-oomd's marks on watched cgroups, and its pre-kill notices.
    oomd: OomdHub = field(default_factory=OomdHub)
    # The watched victims of each memory.oom.group kill, for one record.
    group_kills: GroupKills = field(default_factory=GroupKills)
    # Cgroup limit lookups, shared by the watchers of processes in one cgroup.
    limits: LimitLookups = field(default_factory=LimitLookups)
    # The v2 parents' kill counts, the baselines of the processes below each.
    parent_kills: ParentKillCounts = field(default_factory=ParentKillCounts)
    # Routine snapshots, far below the threshold, wait here for a worker thread.
    snapshot_slots: SnapshotSlots = field(default_factory=SnapshotSlots)
    # Writes to pidfile targets' pidfiles, heard as they close.
    pidfile_changes: PidfileChanges = field(default_factory=PidfileChanges)


@dataclass
class TargetState:
    """What the watchers of one target share: its records, its budget, its counters."""

    records: TargetRecords
    services: Services
    snapshots_emitted: int = 0
    # The pids above the threshold: changed at crossings only, so a new frozenset
    # then rather than a set each target keeps (216 bytes empty; a thousand targets).
    above: frozenset[int] = frozenset()

    @property
    def target(self) -> ResolvedTarget:
        return self.records.target

    def now_above(self, pid: int) -> None:
        if pid not in self.above:
            self.above = self.above | {pid}

    def now_below(self, pid: int) -> None:
        if pid in self.above:
            self.above = self.above - {pid}

    @property
    def count_reached(self) -> bool:
        return self.target.count is not None and self.snapshots_emitted >= self.target.count
