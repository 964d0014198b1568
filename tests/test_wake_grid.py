"""When a watcher's sleep ends: long waits share the event loop's timers, short ones do not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from hypothesis import example, given
from hypothesis import strategies as st

from memdoor.watch.wake_grid import COALESCE_FROM, COALESCE_GRID, wake_grid, wake_time
from memdoor.watcher import ProcessWatcher
from tests.test_pause import waited
from tests.test_watcher import identity_of, make_state

# The loop's clock (time.monotonic) counts from boot: up to about a year of it.
clock = st.floats(min_value=0.0, max_value=3e7, allow_nan=False)


@given(now=clock, delay=st.floats(min_value=COALESCE_FROM, max_value=86400.0 * 2))
@example(now=0.75, delay=1.0000000000000002)  # where the division rounded down onto 1.75
def test_a_long_wait_ends_on_the_grid_never_early_and_at_most_5_percent_late(
    now: float, delay: float
) -> None:
    end = wake_time(now, delay)
    assert end >= now + delay
    assert end - (now + delay) <= COALESCE_GRID + 1e-6
    assert end - now <= delay * 1.05 + 1e-6
    assert abs(end / COALESCE_GRID - round(end / COALESCE_GRID)) < 1e-6


@given(now=clock, delay=st.floats(min_value=0.0, max_value=COALESCE_FROM, exclude_max=True))
def test_a_short_wait_ends_when_asked(now: float, delay: float) -> None:
    assert wake_time(now, delay) == now + delay


def test_watchers_far_below_their_thresholds_wake_together(spawn_workload) -> None:
    """Two watchers asked to wake 12.5 ms apart, in the same grid step, end their
    sleeps in the same turn of the loop (microseconds apart)."""
    workloads = [spawn_workload(), spawn_workload()]
    woken: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        watchers = [
            ProcessWatcher(make_state(w.pid, threshold=99), identity_of(w.pid)) for w in workloads
        ]

        async def sleep(watcher: ProcessWatcher, delay: float) -> None:
            async def nothing() -> None:
                pass

            def tick() -> tuple[Callable[[], Awaitable[None]], float]:
                woken.append(loop.time())
                return nothing, 0.0  # something to await: the task wakes

            watcher.step = tick  # type: ignore[method-assign]
            await waited(watcher, delay)

        first_end: list[float] = []

        async def sleep_first() -> None:
            first_end.append(wake_time(loop.time(), 1.2))
            await sleep(watchers[0], 1.2)

        async def sleep_second() -> None:
            await asyncio.sleep(0)  # once the first sleeps
            # A quarter step before the first's end on the grid, asked for right away:
            # a loaded machine's delay before the ask cannot move it to another step.
            second = first_end[0] - loop.time() - COALESCE_GRID / 4
            assert second >= COALESCE_FROM
            await sleep(watchers[1], second)

        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(sleep_first(), sleep_second()), timeout=10)
        assert time.monotonic() - started < 5

    asyncio.run(scenario())
    assert len(woken) == 2 and abs(woken[0] - woken[1]) < COALESCE_GRID / 10


def test_a_cancelled_sleep_is_not_woken_and_a_failing_wake_up_wakes_the_rest() -> None:
    called: list[str] = []
    errors: list[dict[str, object]] = []

    def failing() -> None:
        called.append("failing")
        raise RuntimeError("boom")

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        grid = wake_grid()
        assert wake_grid() is grid
        grid.call_later(1.0, failing)
        grid.call_later(1.0, lambda: called.append("woken"))
        grid.call_later(1.0, lambda: called.append("cancelled")).cancel()
        grid.call_later(0.01, lambda: called.append("short"))
        await asyncio.sleep(1.0 + 2 * COALESCE_GRID)

    asyncio.run(scenario())
    assert called == ["short", "failing", "woken"]
    assert [type(e["exception"]) for e in errors] == [RuntimeError]
