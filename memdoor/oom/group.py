"""The watched processes one memory.oom.group kill took, gathered for one record.

With memory.oom.group = 1 (Kubernetes 1.28 on sets it on every container;
systemd on units with OOMPolicy=kill) the OOM killer kills a whole cgroup at
once. Each watched victim still gets its own oom_killed record from its own
watcher; the operator's question is "what went down together", so the daemon
writes one oom_group_killed record per group kill once its victims' verdicts
are in. The record waits until neither a victim's verdict nor a line of the
group kill came for GATHER_SECONDS (lines can trail by seconds behind a slow
console), at most GATHER_LIMIT_SECONDS after the first victim; it lists the
pids the kernel log named by then.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

from memdoor.oom.kernel_log import GroupKill

GATHER_SECONDS = 2.0
GATHER_LIMIT_SECONDS = 30.0


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
    # time.monotonic() of the first victim and of the latest one.
    first: float = field(default_factory=time.monotonic)
    latest: float = field(default_factory=time.monotonic)


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
        if victim.pid not in {v.pid for v in gathered.victims}:
            gathered.victims.append(victim)
        gathered.latest = time.monotonic()
        self._arm(key, gathered, self.gather_seconds)

    def _arm(self, key: tuple[str, int], gathered: GatheredGroupKill, delay: float) -> None:
        timer = asyncio.get_running_loop().call_later(delay, self._due, key)
        self._pending[key] = (gathered, timer)

    def _due(self, key: tuple[str, int]) -> None:
        """Written once quiet: no victim and no line of the group for gather_seconds."""
        gathered = self._pending[key][0]
        now = time.monotonic()
        quiet_since = max(gathered.latest, gathered.group.newest_read)
        left = quiet_since + self.gather_seconds - now
        if left > 0 and now - gathered.first < GATHER_LIMIT_SECONDS:
            self._arm(key, gathered, left)
            return
        self._done(key)

    def _done(self, key: tuple[str, int]) -> None:
        gathered, _timer = self._pending.pop(key)
        self.emit(gathered)

    def flush(self) -> None:
        """The daemon stops: write what was gathered rather than lose it."""
        for key in list(self._pending):
            self._pending[key][1].cancel()
            self._done(key)
