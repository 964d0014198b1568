"""One typed snapshot of one process, and the cheap check that decides whether to take it.

The snapshot is taken section by section; any read may find the process gone
or the file denied. What was read is kept, what was not is listed in problems,
and a final identity check throws the data away if the pid was reused by
another process half-way through (its figures would describe a stranger).
A process whose leader exited while other threads run is read through one of
them (memdoor.collect.identity.live_task); its problems name that thread's files.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

from memdoor.collect.cgroup import (
    CgroupFigures,
    CgroupMounts,
    memory_cgroup_of,
    read_cgroup_memory,
)
from memdoor.collect.connections import read_connections
from memdoor.collect.identity import (
    ProcessIdentity,
    ProcessTask,
    live_task,
    read_identity,
    read_stat,
)
from memdoor.collect.memory import (
    MemoryFigures,
    build_memory_figures,
    read_meminfo,
    read_rollup,
    read_status,
)
from memdoor.collect.oom import OomScores, read_oom_scores
from memdoor.collect.pagemap import MappingsSource, read_resident_mappings
from memdoor.collect.reading import Unreadable
from memdoor.collect.tree import Ancestor, read_ancestry
from memdoor.procfs.maps import Mapping
from memdoor.procfs.meminfo import MemInfo
from memdoor.procfs.net import Socket
from memdoor.procfs.status import ProcStatus
from memdoor.vocabulary import ALL_SECTIONS, Section


@dataclass
class Snapshot:
    pid: int
    taken_at: float
    identity: Optional[ProcessIdentity] = None
    memory: Optional[MemoryFigures] = None
    cgroup: Optional[CgroupFigures] = None
    oom: Optional[OomScores] = None
    tree: Optional[list[Ancestor]] = None
    # From the pagemap path a MappingTable, whose rows may not be built yet.
    mappings: Optional[Sequence[Mapping]] = None
    # Which reads gave the mappings' resident sizes: "pagemap", "smaps" or "maps" (none).
    mappings_source: Optional[MappingsSource] = None
    connections: Optional[list[Socket]] = None
    problems: list[Unreadable] = field(default_factory=list)
    # The /proc root it was read from: problems name files under it.
    proc: str = "/proc"

    @property
    def gone(self) -> bool:
        """The process exited or was replaced before or while the snapshot was taken."""
        return any(
            p.reason in ("vanished", "reused") and p.what == _stat_path(self.pid, self.proc)
            for p in self.problems
        )


def _stat_path(pid: int, proc: str) -> str:
    return f"{proc}/{pid}/stat"


def take_snapshot(
    pid: int,
    sections: Collection[Section] = ALL_SECTIONS,
    expected_start_ticks: Optional[int] = None,
    proc: str = "/proc",
    cgroups: Optional[CgroupMounts] = None,
    mapping_rows: bool = True,
) -> Snapshot:
    """Read every requested section; never raises for anything the process or kernel does.

    With the host's cgroup layout, the memory section also reports the process's
    memory cgroup against its limit, so a snapshot shows both threshold bases.
    mapping_rows False leaves a MappingTable's rows unbuilt: a summary does not
    need them, and whoever iterates the mappings builds them (17 ms for 20,000
    mappings, 8 ms more than in the parse), so a caller that will list them
    asks for them here, in the thread that takes the snapshot.
    """
    snapshot = Snapshot(pid=pid, taken_at=time.time(), proc=proc)
    problems = snapshot.problems
    stat = read_stat(pid, proc)
    if isinstance(stat, Unreadable):
        problems.append(stat)
        return snapshot
    task = live_task(pid, stat, proc)
    if task is None:
        # An exiting task is freeing its memory and a zombie has none left:
        # reading on would report a torn or empty process as if it were alive.
        problems.append(_exited(pid, proc, f"the process has exited ({stat.exit_stage})"))
        return snapshot
    if expected_start_ticks is not None and stat.start_ticks != expected_start_ticks:
        problems.append(_reused(pid, proc, expected_start_ticks, stat.start_ticks))
        return snapshot
    snapshot.identity = read_identity(pid, stat, problems, proc)

    tid, where = task.tid, task.proc
    if "mappings" in sections:
        snapshot.mappings, snapshot.mappings_source = read_resident_mappings(
            tid, problems, where, mapping_rows
        )
    if "memory" in sections:
        snapshot.memory = _read_memory(task, problems, proc)
        if cgroups is not None:
            snapshot.cgroup = read_process_cgroup(tid, cgroups, problems, where)
    if "oom" in sections:
        snapshot.oom = read_oom_scores(tid, problems, where)
    if "tree" in sections:
        snapshot.tree = read_ancestry(stat.ppid, problems, proc)
    if "connections" in sections:
        snapshot.connections = read_connections(tid, problems, where)

    _check_still_same(snapshot, stat.start_ticks, proc)
    return snapshot


def _read_memory(
    task: ProcessTask, problems: list[Unreadable], proc: str
) -> Optional[MemoryFigures]:
    """The system's figures from proc, the process's through task."""
    meminfo: Union[MemInfo, Unreadable] = read_meminfo(proc)
    if isinstance(meminfo, Unreadable):
        problems.append(meminfo)
    status: Union[ProcStatus, Unreadable] = read_status(task.tid, task.proc)
    if isinstance(status, Unreadable):
        problems.append(status)
    rollup = read_rollup(task.tid, task.proc)
    if isinstance(rollup, Unreadable):
        problems.append(rollup)
    return build_memory_figures(
        meminfo if isinstance(meminfo, MemInfo) else None,
        status if isinstance(status, ProcStatus) else None,
        rollup[0] if isinstance(rollup, tuple) else None,
        rollup[1] if isinstance(rollup, tuple) else None,
    )


def read_process_cgroup(
    pid: int, cgroups: CgroupMounts, problems: list[Unreadable], proc: str = "/proc"
) -> Optional[CgroupFigures]:
    cgroup = memory_cgroup_of(pid, cgroups, proc)
    if isinstance(cgroup, Unreadable):
        problems.append(cgroup)
        return None
    figures = read_cgroup_memory(cgroup)
    if isinstance(figures, Unreadable):
        problems.append(figures)
        return None
    return figures


def _exited(pid: int, proc: str, detail: str) -> Unreadable:
    return Unreadable(_stat_path(pid, proc), "vanished", detail)


def _reused(pid: int, proc: str, expected: int, found: int) -> Unreadable:
    return Unreadable(
        _stat_path(pid, proc),
        "reused",
        f"pid {pid} now belongs to a process started at tick {found}, not {expected}",
    )


def _check_still_same(snapshot: Snapshot, start_ticks: int, proc: str) -> None:
    """Re-read stat last: the data is only trustworthy if the same process is still there."""
    pid = snapshot.pid
    after = read_stat(pid, proc)
    if isinstance(after, Unreadable):
        snapshot.problems.append(
            Unreadable(
                after.what, after.reason, f"process exited during the snapshot: {after.detail}"
            )
        )
    elif live_task(pid, after, proc) is None:
        snapshot.problems.append(
            _exited(pid, proc, f"process exited during the snapshot ({after.exit_stage})")
        )
    elif after.start_ticks != start_ticks:
        snapshot.problems.append(_reused(pid, proc, start_ticks, after.start_ticks))
        snapshot.identity = snapshot.memory = snapshot.oom = snapshot.cgroup = None
        snapshot.tree = snapshot.mappings = snapshot.connections = None
