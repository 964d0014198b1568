"""One supervisor per configured target: finds its processes and runs a watcher for each.

The supervisor re-resolves the target on its interval, so new processes of an
exe are picked up and a pidfile that names a restarted service is followed; a
pidfile target also as soon as its pidfile is written (memdoor.pidfile_changes),
since a restarted service can be killed again before the interval ends.
Resolution never re-adopts a pid it saw end while the locator still names
that same pid: a stale pidfile pointing at a recycled pid would otherwise make
a stranger the target. A watcher that died of a bug is not such an end: the
process may still be OOM-killed later, so its pid is adopted again on the next
step, and the error is reported once, not on every retry.

Resolving a pidfile or an exe reads the file system (a pidfile may sit on NFS, the
exe's path is resolved), so it runs in a thread of its own and never holds the
event loop, whatever the file system does.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import Any, Optional

from memdoor.collect.identity import read_identity, read_stat
from memdoor.collect.reading import Unreadable
from memdoor.config import ResolvedTarget
from memdoor.detached import call_detached
from memdoor.pidfile_changes import PidfileListener
from memdoor.resolve import ExeNarrowing, Resolution, resolve
from memdoor.watch.context import TargetState
from memdoor.watcher import ProcessWatcher

# What most supervisors retry, and have seen end: one empty frozenset for all (an
# empty set is 216 bytes, and a thousand targets kept one each).
_NO_PIDS: frozenset[int] = frozenset()


class TargetSupervisor:
    def __init__(self, state: TargetState) -> None:
        self.state = state
        # pid -> its watcher, and its task (or the future run() sets: _outcome_of).
        self.watchers: dict[int, tuple[ProcessWatcher, asyncio.Future[None]]] = {}
        self.ended_pids = _NO_PIDS
        self.last_progress = time.monotonic()
        # Waiting on its one watcher rather than polling (a fixed-pid target).
        self._idle = False
        self._last_problem: Optional[str] = None
        self._last_failure: Optional[str] = None
        self._waiting_reported = False
        # pid -> (start time, error) of each process whose watcher died of a bug: it is
        # adopted again without a second target_found, the same error not said again.
        self._failed: dict[int, tuple[int, str]] = {}
        # Pids whose watcher failed in this step: adopted again on the next one.
        self._retry_next_step = _NO_PIDS
        pidfile = state.target.pidfile
        self._pidfile = (
            None if pidfile is None else PidfileListener(state.services.pidfile_changes, pidfile)
        )

    @property
    def name(self) -> str:
        return self.state.target.name

    async def run(self) -> None:
        try:
            while True:
                await self._guarded_step()
                self.last_progress = time.monotonic()
                waiting = self._fixed_pid_watcher()
                target = self.state.target
                if waiting is None and self._pidfile is not None:
                    await self._pidfile.pause(target.interval, target.min_interval)
                elif waiting is None:
                    await asyncio.sleep(target.interval)
                else:
                    # Nothing to resolve until that one process ends (or its watcher fails).
                    # It runs here (not in a task and a coroutine of its own: a thousand
                    # targets keep one of each less), its end set on its outcome for _reap.
                    self._idle = True
                    watcher, outcome = waiting
                    try:
                        await watcher.run()
                    except asyncio.CancelledError:
                        outcome.cancel()
                        raise
                    except Exception as error:  # a bug in one watcher: _reap reports it
                        outcome.set_exception(error)
                    else:
                        outcome.set_result(None)
                    self._idle = False
        finally:
            if self._pidfile is not None:
                self._pidfile.close()
            for _watcher, outcome in self.watchers.values():
                outcome.cancel()
            await asyncio.gather(*(o for _w, o in self.watchers.values()), return_exceptions=True)

    def _fixed_pid_watcher(self) -> Optional[tuple[ProcessWatcher, asyncio.Future[None]]]:
        """A fixed-pid target's adopted watcher, not yet run: run() runs it itself."""
        pid = self.state.target.pid
        if pid is None or pid not in self.watchers:
            return None
        watcher, outcome = self.watchers[pid]
        return None if outcome.done() else (watcher, outcome)

    async def _guarded_step(self) -> None:
        """A bug met while resolving must not end the target's supervision for good.

        It is reported once (again only if it changes) and the step is retried
        on the target's interval, like a locator that fails.
        """
        try:
            await self.step()
        except Exception as exc:  # the boundary that keeps one target's bug in that target
            text = _described(exc)
            if text != self._last_failure:
                self.state.records.supervision_failed(text)
            self._last_failure = text
        else:
            self._last_failure = None

    async def step(self) -> None:
        self._reap()
        if self.state.count_reached:
            return
        target = self.state.target
        if target.pid is not None and (
            target.pid in self.ended_pids or target.pid in self.watchers
        ):
            # A fixed pid is one process: watched, or ended and never re-adopted.
            return
        resolution = await _resolution(target, self.state.services.proc, self._pidfile)
        self._report_resolution(resolution)
        for pid in resolution.pids:
            if pid in self.watchers or pid in self.ended_pids or pid in self._retry_next_step:
                continue
            self._adopt(pid, resolution.start_ticks.get(pid))
        # A pid that ended may be re-adopted once the locator stops naming it.
        named = set(resolution.pids) | ({target.pid} if target.pid else set())
        if self.ended_pids:
            self.ended_pids &= named
        if self._failed:
            self._failed = {pid: fail for pid, fail in self._failed.items() if pid in named}

    def _adopt(self, pid: int, checked_start: Optional[int]) -> None:
        """Watch pid; checked_start, when resolution checked the process's owner, is the
        start time of the process it checked, and no other process is adopted."""
        proc = self.state.services.proc
        stat = read_stat(pid, proc)
        if isinstance(stat, Unreadable):
            return
        if checked_start is not None and stat.start_ticks != checked_start:
            return  # the pid was reused since: the next step checks the new process
        problems: list[Unreadable] = []
        identity = read_identity(pid, stat, problems, proc)
        target = self.state.target
        if target.exe is not None and identity.exe is None:
            return  # cannot confirm it runs the exe: never report a stranger
        watcher = ProcessWatcher(self.state, identity)
        attach_problems = watcher.attach()
        self._waiting_reported = False
        failed = self._failed.get(pid)
        if failed is None or failed[0] != identity.start_ticks:
            self._failed.pop(pid, None)
            watcher.records.target_found(
                None if watcher.tracker is None else watcher.tracker.place.path,
                watcher.wakeups.kinds,
                problems + attach_problems,
                watcher.warnings,
            )
        self.watchers[pid] = (watcher, self._outcome_of(watcher))

    def _outcome_of(self, watcher: ProcessWatcher) -> asyncio.Future[None]:
        """Where the watcher's end will show, for _reap.

        A fixed-pid target has one process at a time: its watcher runs in the
        supervisor's own task (run awaits it) and its end is set on a future, so
        a thousand such targets keep a thousand tasks, not two thousand. Any other
        target's watchers run beside its resolution, each in a task of its own.
        """
        loop = asyncio.get_running_loop()
        if self.state.target.pid is None:
            return loop.create_task(watcher.run())
        return loop.create_future()

    def _reap(self) -> None:
        """Drop finished watchers: a process that ended is not adopted again while its
        locator names it; one whose watcher died of a bug is, on the next step."""
        retry: set[int] = set()
        for pid, (watcher, outcome) in list(self.watchers.items()):
            if not outcome.done():
                continue
            del self.watchers[pid]
            error = None if outcome.cancelled() else outcome.exception()
            if error is None:
                self.ended_pids |= {pid}
                self._failed.pop(pid, None)
                continue
            failure = (watcher.identity.start_ticks, _described(error))
            if self._failed.get(pid) != failure:
                self.state.records.watcher_failed(pid, error)
            self._failed[pid] = failure
            retry.add(pid)
        self._retry_next_step = frozenset(retry) if retry else _NO_PIDS

    def _report_resolution(self, resolution: Resolution) -> None:
        """Say once when a target has nothing to watch or its locator fails, not every tick."""
        problem = resolution.problem
        text = None
        if problem is not None:
            text = f"{problem.what}: {problem.reason} ({problem.detail})"
            if text != self._last_problem:
                self.state.records.target_unresolved(text, problem)
        self._last_problem = text
        if not resolution.pids and not self.watchers and not self._waiting_reported:
            self._waiting_reported = True
            self.state.records.target_waiting()

    def wake(self, pids: set[int], cgroup_path: Optional[str]) -> None:
        for pid, (watcher, _outcome) in self.watchers.items():
            tracker = watcher.tracker
            in_cgroup = tracker is not None and tracker.place.path == cgroup_path
            if pid in pids or in_cgroup:
                watcher.wake()

    def stale(self, now: float, allowance: float) -> bool:
        """True when this supervisor or one of its watchers stopped making progress."""
        # A watcher far below its threshold legitimately sleeps two intervals.
        limit = 3 * self.state.target.interval + allowance
        if not self._idle and now - self.last_progress > limit:
            return True
        return any(
            now - watcher.last_progress > limit
            for watcher, outcome in self.watchers.values()
            if not outcome.done()
        )


async def _resolution(
    target: ResolvedTarget, proc: str, listener: Optional[PidfileListener]
) -> Resolution:
    """The target's pids now; a pidfile's directory is watched first if it is not yet."""
    locator = (target.pid, target.pidfile, target.exe, proc)
    if target.pid is not None:
        # /proc alone, which every tick reads on the loop too: found at once.
        return resolve(*locator)
    narrowing = ExeNarrowing(target.cmdline, target.unit, target.cgroup)
    unwatched = listener if listener is not None and listener.needs_watch() else None
    watch, resolution = await call_detached(
        _watched_then_resolved, unwatched, *locator, target.pidfile_owner, narrowing
    )
    if unwatched is not None and watch is not None:
        unwatched.listen(watch)
    return resolution


def _watched_then_resolved(
    unwatched: Optional[PidfileListener], *locator: Any
) -> tuple[Optional[int], Resolution]:
    """The pidfile's directory watched first when it is not yet, then the target
    resolved: a write in between is both heard and read, none falls between them."""
    return None if unwatched is None else unwatched.add_watch(), resolve(*locator)


def _described(error: BaseException) -> str:
    """The error and the line that raised it: what tells one bug from another."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return repr(error)
    where = frames[-1]
    return f"{error!r} at {where.filename}:{where.lineno} in {where.name}"
