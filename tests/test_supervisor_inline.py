"""A fixed-pid target's watcher, run in its supervisor's task: its end is set on a
future as its own task's would be, for the supervisor's reaper to take."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from memdoor.supervisor import _run_into
from memdoor.watcher import ProcessWatcher


class _Watcher:
    def __init__(self, run: Any) -> None:
        self.run = run


def _outcome_of_run(run: Any) -> asyncio.Future[None]:
    async def main() -> asyncio.Future[None]:
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(_run_into(cast(ProcessWatcher, _Watcher(run)), outcome), 10)
        return outcome

    return asyncio.run(main())


def test_a_watchers_bug_is_set_on_the_outcome_and_does_not_end_the_supervisor() -> None:
    async def failing() -> None:
        await asyncio.sleep(0.01)
        raise RuntimeError("a watcher's bug")

    outcome = _outcome_of_run(failing)
    assert outcome.done() and isinstance(outcome.exception(), RuntimeError)


def test_a_watcher_that_ends_sets_an_empty_outcome() -> None:
    async def ending() -> None:
        await asyncio.sleep(0.01)

    outcome = _outcome_of_run(ending)
    assert outcome.done() and not outcome.cancelled() and outcome.exception() is None


def test_cancelling_the_supervisor_cancels_the_watcher_and_its_outcome() -> None:
    async def main() -> tuple[bool, asyncio.Future[None], asyncio.Task[None]]:
        stopped = []

        async def watching() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                stopped.append(True)

        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watcher = cast(ProcessWatcher, _Watcher(watching))
        supervisor = asyncio.get_running_loop().create_task(_run_into(watcher, outcome))
        await asyncio.sleep(0.01)
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        return bool(stopped), outcome, supervisor

    stopped, outcome, supervisor = asyncio.run(main())
    assert stopped and outcome.cancelled() and supervisor.cancelled()
