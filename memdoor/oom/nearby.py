"""OOM kills of unwatched processes in a watched process's cgroup (oom_kill_nearby).

The kernel log names every victim with its cgroup: each target with a watched
process in that cgroup is told once (nearby_from_report). Where the log cannot be read
(a container, a unit without CAP_SYSLOG under kernel.dmesg_restrict) the
cgroup's own OOM counter still rises with each kill in it: v2
memory.events.local or v1 memory.oom_control, read every few seconds for each
cgroup that holds a watched process.

A rise is a neighbour's kill only if no watched process of that cgroup was
the victim. So a rise waits while any of them is dying (gone, exiting, or
with SIGKILL pending), since its own watcher is about to report it; kills
its watcher did report as oom_killed (claim) are subtracted; the rest are
neighbours'. The counter cannot say which process, so the record gives how
many.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Optional

from memdoor.collect.cgroup import MemoryCgroup, read_oom_kill_count
from memdoor.collect.liveness import Verdict, check_process
from memdoor.collect.reading import Unreadable
from memdoor.oom.kill import Kill
from memdoor.procfs.kmsg import OomKillReport

# How often the counters are read: a neighbour's kill is reported this late at
# most, plus the time a dying watched process takes to be reported.
NEARBY_PERIOD = 5.0


@dataclass(frozen=True)
class WatchedProcess:
    pid: int
    start_ticks: int


@dataclass(frozen=True)
class Placement:
    """A watched process, the target watching it, and its memory cgroup: what the
    daemon hands over so that nothing here reaches into watchers."""

    target: str
    process: WatchedProcess
    cgroup: Optional[MemoryCgroup]
    # False once its watcher ended: still the target's own process, no longer told.
    live: bool = True


@dataclass(frozen=True)
class NearbyKill:
    """One kill to tell one target, through one of its live processes in that cgroup."""

    target: str
    pid: int
    cgroup_path: str
    kill: Kill
    victim_pid: Optional[int]
    victim_name: Optional[str]
    kills: int


@dataclass
class WatchedCgroup:
    """A cgroup and the watched processes in it, as one check sees them."""

    cgroup: MemoryCgroup
    processes: list[WatchedProcess] = field(default_factory=list)


@dataclass(frozen=True)
class NearbyKills:
    cgroup: MemoryCgroup
    before: int
    after: int
    kills: int
    # The counter file read.
    file: str


@dataclass
class _Ledger:
    # The counter value whose kills are accounted for: seen at the start, claimed
    # by watched processes, or already reported as neighbours'.
    explained: int
    # Kills claimed by watched processes' oom_killed records, not yet seen in a reading.
    claimed: int = 0


def _dying(process: WatchedProcess, proc: str) -> bool:
    liveness = check_process(process.pid, None, process.start_ticks, proc)
    if liveness.verdict in (Verdict.EXITED, Verdict.REUSED):
        return True
    return liveness.stat is not None and liveness.stat.kill_pending


class NeighbourKillCounter:
    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._ledgers: dict[str, _Ledger] = {}

    def track(self, directory: str, count: int) -> None:
        """Start counting from a watcher's first reading, so a kill right after it counts."""
        self._ledgers.setdefault(directory, _Ledger(count))

    def claim(self, directory: str, kills: int) -> None:
        """A watched process of this cgroup was reported OOM-killed, its counter rising by kills."""
        ledger = self._ledgers.get(directory)
        if ledger is not None:
            ledger.claimed += kills

    def check(self, groups: Iterable[WatchedCgroup]) -> list[NearbyKills]:
        """Read each cgroup's counter once; return the kills no watched process accounts for."""
        found = []
        seen = set()
        for group in groups:
            directory = group.cgroup.directory
            seen.add(directory)
            counted = read_oom_kill_count(group.cgroup)
            if isinstance(counted, Unreadable):
                self._ledgers.pop(directory, None)
                continue
            count = counted.kills
            ledger = self._ledgers.get(directory)
            if ledger is None or count < ledger.explained:
                # Not tracked yet, or a new cgroup of the same name: a baseline.
                self._ledgers[directory] = _Ledger(count)
                continue
            rise = count - ledger.explained
            if rise == 0 or any(_dying(process, self.proc) for process in group.processes):
                continue
            by_watched = min(ledger.claimed, rise)
            ledger.claimed -= by_watched
            before, ledger.explained = ledger.explained, count
            if rise > by_watched:
                found.append(
                    NearbyKills(group.cgroup, before, count, rise - by_watched, counted.file)
                )
        for directory in set(self._ledgers) - seen:
            del self._ledgers[directory]
        return found

    def check_placements(self, placements: Sequence[Placement]) -> list[NearbyKill]:
        """check() over the cgroups of the live placements, each kill told to its targets."""
        groups: dict[str, WatchedCgroup] = {}
        for placement in placements:
            if placement.live and placement.cgroup is not None:
                group = groups.setdefault(
                    placement.cgroup.directory, WatchedCgroup(placement.cgroup)
                )
                group.processes.append(placement.process)
        told = []
        for found in self.check(groups.values()):
            kill = Kill(None, found.before, found.after, found.file)
            told += [
                NearbyKill(target, pid, found.cgroup.path, kill, None, None, found.kills)
                for target, pid in _one_per_target(placements, found.cgroup.path)
            ]
        return told


def _one_per_target(placements: Sequence[Placement], cgroup_path: str) -> list[tuple[str, int]]:
    """(target, pid) of the first live watched process of each target in that cgroup."""
    chosen: dict[str, int] = {}
    for placement in placements:
        cgroup = placement.cgroup
        if not placement.live or cgroup is None or placement.target in chosen:
            continue
        if cgroup.path == cgroup_path:
            chosen[placement.target] = placement.process.pid
    return list(chosen.items())


def nearby_from_report(report: OomKillReport, placements: Sequence[Placement]) -> list[NearbyKill]:
    """A kill in the kernel log, told to each target watching a process in the victim's cgroup.

    A target that watches the victim itself is not told: its own watcher reports
    the kill as oom_killed, with the last snapshot.
    """
    if report.task_memcg is None:
        return []
    own = {p.target for p in placements if p.process.pid == report.pid}
    return [
        NearbyKill(target, pid, report.task_memcg, Kill(report), report.pid, report.name, 1)
        for target, pid in _one_per_target(placements, report.task_memcg)
        if target not in own
    ]
