"""OOM kills of unwatched processes in a watched cgroup, told by its counter alone.

The kernel log names every victim, and memdoor reports the kills of a watched
process's neighbours from it (oom_kill_nearby). Where the log cannot be read
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

from collections.abc import Iterable
from dataclasses import dataclass, field

from memdoor.collect.cgroup import MemoryCgroup, read_oom_kill_count
from memdoor.collect.liveness import Verdict, check_process
from memdoor.collect.reading import Unreadable

# How often the counters are read: a neighbour's kill is reported this late at
# most, plus the time a dying watched process takes to be reported.
NEARBY_PERIOD = 5.0


@dataclass(frozen=True)
class WatchedProcess:
    pid: int
    start_ticks: int


@dataclass
class CgroupGroup:
    """A cgroup and the watched processes in it, as one check sees them."""

    cgroup: MemoryCgroup
    processes: list[WatchedProcess] = field(default_factory=list)


@dataclass(frozen=True)
class NearbyKills:
    cgroup: MemoryCgroup
    before: int
    after: int
    kills: int


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

    def check(self, groups: Iterable[CgroupGroup]) -> list[NearbyKills]:
        """Read each cgroup's counter once; return the kills no watched process accounts for."""
        found = []
        seen = set()
        for group in groups:
            directory = group.cgroup.directory
            seen.add(directory)
            count = read_oom_kill_count(group.cgroup)
            if isinstance(count, Unreadable):
                self._ledgers.pop(directory, None)
                continue
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
                found.append(NearbyKills(group.cgroup, before, count, rise - by_watched))
        for directory in set(self._ledgers) - seen:
            del self._ledgers[directory]
        return found
