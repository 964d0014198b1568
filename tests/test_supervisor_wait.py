"""A fixed-pid supervisor's wait for its watcher: ends with it, never cancels it."""

from __future__ import annotations

import asyncio

from memdoor.supervisor import _ended


def test_the_wait_ends_when_the_task_fails_and_leaves_its_error_to_the_reaper() -> None:
    async def main() -> None:
        async def failing() -> None:
            await asyncio.sleep(0.01)
            raise RuntimeError("a watcher's bug")

        task = asyncio.get_running_loop().create_task(failing())
        await asyncio.wait_for(_ended(task), 10)
        assert task.done() and isinstance(task.exception(), RuntimeError)

    asyncio.run(main())


def test_cancelling_the_wait_leaves_the_task_running() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def watcher() -> None:
            await release.wait()

        task = asyncio.get_running_loop().create_task(watcher())
        waiting = asyncio.get_running_loop().create_task(_ended(task))
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert waiting.cancelled() and not task.done()
        release.set()
        await asyncio.wait_for(task, 10)
        assert task.done() and not task.cancelled() and task.exception() is None

    asyncio.run(main())
