"""A fixed-pid target's watcher, run in its supervisor's task: its end is set on a
future as its own task's would be, for the supervisor's reaper to take."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from memdoor.supervisor import TargetSupervisor
from memdoor.watch.context import TargetState
from memdoor.watcher import ProcessWatcher
from tests.test_watcher import log_of, make_state, until
from tests.workload_fixture import SpawnWorkload

WatcherRun = Callable[[ProcessWatcher], Awaitable[None]]


async def adopted(pid: int, state: TargetState) -> tuple[asyncio.Task[None], asyncio.Future[None]]:
    """The supervisor running in its task, once it adopted pid: the task, the outcome."""
    supervisor = TargetSupervisor(state)
    task = asyncio.get_running_loop().create_task(supervisor.run())
    await until(lambda: pid in supervisor.watchers)
    return task, supervisor.watchers[pid][1]


def outcome_of_run(
    run: WatcherRun, spawn_workload: SpawnWorkload, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Future[None], bool, list[str]]:
    """The outcome the supervisor set for its watcher whose run() is run, whether the
    supervisor's task was still running then, and the records said."""
    monkeypatch.setattr(ProcessWatcher, "run", run)
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99, interval=60.0)

    async def main() -> tuple[asyncio.Future[None], bool]:
        task, outcome = await adopted(workload.pid, state)
        await until(outcome.done)
        await asyncio.sleep(0.05)  # the supervisor's next steps, had it ended
        running = not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return outcome, running

    outcome, running = asyncio.run(asyncio.wait_for(main(), 20))
    return outcome, running, log_of(state).events()


def test_a_watchers_bug_is_set_on_the_outcome_and_does_not_end_the_supervisor(
    spawn_workload: SpawnWorkload, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(_watcher: ProcessWatcher) -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("a watcher's bug")

    outcome, running, events = outcome_of_run(failing, spawn_workload, monkeypatch)
    assert isinstance(outcome.exception(), RuntimeError) and running
    assert events[:2] == ["target_found", "watcher_failed"]


def test_a_watcher_that_ends_sets_an_empty_outcome(
    spawn_workload: SpawnWorkload, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def ending(_watcher: ProcessWatcher) -> None:
        await asyncio.sleep(0.01)

    outcome, running, events = outcome_of_run(ending, spawn_workload, monkeypatch)
    assert not outcome.cancelled() and outcome.exception() is None and running
    assert events == ["target_found"]


def test_cancelling_the_supervisor_cancels_the_watcher_and_its_outcome(
    spawn_workload: SpawnWorkload, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped: list[bool] = []

    async def watching(_watcher: ProcessWatcher) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(True)

    monkeypatch.setattr(ProcessWatcher, "run", watching)
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99, interval=60.0)

    async def main() -> tuple[asyncio.Future[None], asyncio.Task[None]]:
        task, outcome = await adopted(workload.pid, state)
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return outcome, task

    outcome, task = asyncio.run(asyncio.wait_for(main(), 20))
    assert stopped and outcome.cancelled() and task.cancelled()
