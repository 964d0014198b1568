"""The watched processes one memory.oom.group kill took, gathered for one record.

With memory.oom.group = 1 (Kubernetes 1.28 on sets it on every container;
systemd on units with OOMPolicy=kill) the OOM killer kills a whole cgroup at
once. Each watched victim still gets its own oom_killed record from its own
watcher; the operator's question is "what went down together", so the daemon
writes one oom_group_killed record per group kill once its victims' verdicts
are in. The verdicts of one group come within a few milliseconds of each
other, each after the group's lines settled (memdoor.oom.witness), so a
victim that comes GATHER_SECONDS after the previous one starts a new record.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

from memdoor.oom.kernel_log import GroupKill

GATHER_SECONDS = 1.0


@dataclass(frozen=True)
class GroupVictim:
    """One watched process the group kill took."""

    target: str
    pid: int
    name: str


@dataclass
class GatheredGroupKill:
    group: GroupKill
    victims: list[GroupVictim] = field(default_factory=list)


Emit = Callable[[GatheredGroupKill], None]


class GroupKills:
    """Gathers victims by group kill and hands each group to emit once."""

    def __init__(self, gather_seconds: float = GATHER_SECONDS) -> None:
        self.gather_seconds = gather_seconds
        # Set by the daemon to write the record.
        self.emit: Emit = lambda _gathered: None
        self._pending: dict[tuple[str, int], tuple[GatheredGroupKill, asyncio.TimerHandle]] = {}

    def victim(self, group: GroupKill, victim: GroupVictim) -> None:
        """A watched process's verdict named this group kill (from the event loop)."""
        key = (group.cgroup, group.usec_since_boot)
        pending = self._pending.get(key)
        if pending is None:
            gathered = GatheredGroupKill(group)
        else:
            gathered = pending[0]
            pending[1].cancel()
        gathered.victims.append(victim)
        timer = asyncio.get_running_loop().call_later(self.gather_seconds, self._done, key)
        self._pending[key] = (gathered, timer)

    def _done(self, key: tuple[str, int]) -> None:
        gathered, _timer = self._pending.pop(key)
        self.emit(gathered)

    def flush(self) -> None:
        """The daemon stops: write what was gathered rather than lose it."""
        for key in list(self._pending):
            self._pending[key][1].cancel()
            self._done(key)
