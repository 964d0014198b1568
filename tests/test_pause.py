"""The wait between ticks: ticks that find nothing to await run in its timer, and the
task is woken only for what must be awaited, or for a wake-up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Union

from memdoor.watch.pause import Due, Pause


class Steps(Pause):
    """A pause whose tick is the test's."""

    def __init__(self, step: Callable[[], Union[float, Due]]) -> None:
        super().__init__()
        self._test_step = step

    def step(self) -> Union[float, Due]:
        return self._test_step()


async def waited(pause: Pause, delay: float) -> None:
    """The wait as ProcessWatcher.run makes it."""
    waiter = pause.arm(delay)
    if waiter is not None:
        try:
            await waiter
        finally:
            pause.disarm()


STEP = 0.01  # below the wake grid's COALESCE_FROM: a timer of its own, no grid wait


def test_ticks_at_rest_run_in_the_timer_until_one_must_be_awaited() -> None:
    """Four steps find nothing: the task stays suspended through all of them; the
    fifth returns something to await, which the task's next step hands back."""
    steps: list[int] = []
    awaited: list[str] = []

    async def snapshot() -> None:
        awaited.append("snapshot")

    def step() -> Union[float, Due]:
        steps.append(len(steps))
        return STEP if len(steps) < 5 else (snapshot, 2.5)

    async def scenario() -> tuple[int, Union[float, Due]]:
        pause = Steps(step)
        await waited(pause, STEP)
        seen = len(steps)
        due = pause.due_step()  # what the task's tick takes: the step found, not a new one
        assert isinstance(due, tuple)
        await due[0]()
        return seen, due

    seen, due = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert seen == 5 and len(steps) == 5
    assert isinstance(due, tuple) and due[1] == 2.5 and awaited == ["snapshot"]


def test_a_wake_up_ends_the_wait_and_one_during_a_tick_skips_the_next_wait() -> None:
    async def scenario() -> list[str]:
        events: list[str] = []
        pause = Steps(lambda: 60.0)

        async def waiting() -> None:
            await waited(pause, 60.0)
            events.append("woken")

        task = asyncio.get_running_loop().create_task(waiting())
        await asyncio.sleep(0)
        pause.wake()
        await asyncio.wait_for(task, 5)
        pause.wake()  # no wait in progress, as while a tick runs
        if pause.arm(60.0) is None:
            events.append("not waited")
        return events

    assert asyncio.run(scenario()) == ["woken", "not waited"]


def test_a_step_that_raises_in_the_timer_wakes_the_task_to_meet_it_itself() -> None:
    calls: list[int] = []

    def step() -> float:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a bug in the tick")
        return STEP

    async def scenario() -> None:
        pause = Steps(step)
        await asyncio.wait_for(waited(pause, STEP), 5)  # woken by the second step's error
        assert len(calls) == 2
        pause.due_step()  # the task's own tick: no due step kept, so the step runs again

    asyncio.run(scenario())
    assert len(calls) == 3


def test_a_cancelled_wait_stops_its_timer() -> None:
    steps: list[int] = []

    def step() -> float:
        steps.append(1)
        return STEP

    async def scenario() -> None:
        pause = Steps(step)
        task = asyncio.get_running_loop().create_task(waited(pause, STEP))
        while len(steps) < 2:
            await asyncio.sleep(STEP)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        stopped_at = len(steps)
        await asyncio.sleep(10 * STEP)
        assert len(steps) == stopped_at

    asyncio.run(scenario())
