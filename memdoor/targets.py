"""The running targets: one supervisor task per configured target, kept across reloads.

A reload diffs resolved targets: an unchanged target keeps its supervisor, and
so its watchers' kept snapshots (the evidence of a kill that may come next),
and only follows the new daemon-wide settings; a changed one starts afresh.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from memdoor.config import ResolvedTarget
from memdoor.emitter import RecordWriter, TargetRecords
from memdoor.oom.nearby import NearbyKill, Placement, WatchedProcess
from memdoor.supervisor import TargetSupervisor
from memdoor.watch.context import Services, TargetState


class Targets:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._running: dict[str, tuple[ResolvedTarget, TargetSupervisor, asyncio.Task[None]]] = {}

    def apply(
        self, targets: list[ResolvedTarget], writer: RecordWriter, redact_cmdline: bool
    ) -> tuple[list[str], list[str], list[str]]:
        """Start, stop and restart supervisors to match targets; (added, removed, changed)."""
        for _target, supervisor, _task in self._running.values():
            supervisor.state.records.writer = writer
            supervisor.state.records.redact_cmdline = redact_cmdline
        wanted = {target.name: target for target in targets}
        running = self._running
        removed = [name for name in running if name not in wanted]
        changed = [name for name, t in wanted.items() if name in running and running[name][0] != t]
        added = [name for name in wanted if name not in running]
        for name in removed + changed:
            running.pop(name)[2].cancel()
        for name in added + changed:
            target = wanted[name]
            state = TargetState(TargetRecords(writer, target, redact_cmdline), self.services)
            supervisor = TargetSupervisor(state)
            task = asyncio.get_running_loop().create_task(supervisor.run())
            running[name] = (target, supervisor, task)
        return added, removed, changed

    async def stop(self, timeout: float) -> list[str]:
        """Cancel every supervisor and wait at most timeout for them to end.

        A task ends as soon as it is cancelled, even one awaiting a snapshot
        whose worker thread is stuck in a read; the bound is for a task that
        would not, so that stopping never waits on it. Returns the names of the
        targets whose task had not ended.
        """
        tasks = {task: name for name, (_t, _s, task) in self._running.items()}
        self._running.clear()
        for task in tasks:
            task.cancel()
        if not tasks:
            return []
        # gather retrieves each task's outcome, so none is logged as never retrieved.
        await asyncio.wait({asyncio.gather(*tasks, return_exceptions=True)}, timeout=timeout)
        return sorted(name for task, name in tasks.items() if not task.done())

    def placements(self) -> list[Placement]:
        """Each watched process with its cgroup, for memdoor.oom.nearby."""
        return [
            Placement(
                name,
                WatchedProcess(pid, watcher.identity.start_ticks),
                None if watcher.tracker is None else watcher.tracker.place,
                live=not outcome.done(),
            )
            for name, (_target, supervisor, _task) in self._running.items()
            for pid, (watcher, outcome) in supervisor.watchers.items()
        ]

    def wake(self, pids: set[int], cgroup_path: Optional[str]) -> None:
        """Cut short the sleep of the watchers of these pids, or of that cgroup's."""
        for _target, supervisor, _task in self._running.values():
            supervisor.wake(pids, cgroup_path)

    def tell(self, kills: list[NearbyKill]) -> None:
        for nearby in kills:
            entry = self._running.get(nearby.target)
            if entry is not None:
                entry[1].state.records.oom_kill_nearby(nearby)

    def records_of(self, name: str) -> Optional[TargetRecords]:
        """The running target's records (its config, detail and sinks), if it runs."""
        entry = self._running.get(name)
        return None if entry is None else entry[1].state.records

    def counts(self) -> tuple[int, int, int]:
        """(targets, processes watched, processes above their threshold)."""
        supervisors = [supervisor for _t, supervisor, _task in self._running.values()]
        return (
            len(supervisors),
            sum(len(s.watchers) for s in supervisors),
            sum(len(s.state.above) for s in supervisors),
        )

    def stale(self, now: float, allowance: float) -> list[str]:
        """Names of the targets whose supervisor or a watcher stopped making progress."""
        return [
            name
            for name, (_target, supervisor, _task) in self._running.items()
            if supervisor.stale(now, allowance)
        ]
