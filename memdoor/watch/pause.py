"""A watcher's wait between ticks, which ticks on its own while the process is at rest.

Most ticks of a thousand targets far below their thresholds find nothing to do:
the process reads as it did, no snapshot is due. Resuming the watcher's task for
each of them (a future, a callback scheduled, the coroutines it awaits through
resumed and suspended again) costs more than the tick's reads. So when the timer
fires, the tick's synchronous part (the reads and the verdict) runs in its
callback, and while it finds nothing that must be awaited the timer is set again
and the task sleeps on. What must be awaited (the process's end, a snapshot)
wakes the task with the step found, and the task awaits it.

The timer is a place in one shared with the watchers that wake at the same time
(memdoor.watch.wake_grid). ProcessWatcher is a Pause: a base class rather than an
object the watcher holds, which would cost a thousand targets an object and a
bound method each.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Optional, Union

from memdoor.watch.wake_grid import Cancellable, WakeGrid, wake_grid

# What a tick must await (an end, a snapshot), and the delay to the next one after it.
Due = tuple[Callable[[], Awaitable[object]], float]


class Pause:
    __slots__ = ("_due", "_grid", "_timer", "_waiter", "_woken", "last_progress")

    def __init__(self) -> None:
        # When a tick last ended, in the task or in the timer: what the watchdog checks.
        self.last_progress = time.monotonic()
        self._waiter: Optional[asyncio.Future[None]] = None
        self._timer: Optional[Cancellable] = None
        # The running loop's wake grid, looked up once rather than every tick.
        self._grid: Optional[WakeGrid] = None
        self._woken = False
        # What the timer's tick found must be awaited: the task's next tick does it.
        self._due: Optional[Due] = None

    def wake(self) -> None:
        """End the wait; while a tick runs (a snapshot in its thread), skip the next one:
        the process's exit must not wait for a timer of up to two intervals."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        else:
            self._woken = True

    def arm(self, delay: float) -> Optional[asyncio.Future[None]]:
        """What the wait awaits, ended by a wake-up or a step that must be awaited; None
        when a wake-up came during the tick. The caller awaits it, then disarm()s
        whatever the end (a cancellation is never swallowed by a wake-up racing it).
        Not a coroutine of its own: a thousand targets' tasks would each keep one."""
        if self._woken:
            self._woken = False
            return None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        if self._grid is None or self._grid.loop is not loop:
            self._grid = wake_grid()
        self._timer = self._grid.call_later(delay, self._fired)
        return self._waiter

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._waiter = None

    def step(self) -> Union[float, Due]:
        """The tick's synchronous part: the delay to the next tick, alone or with what
        must be awaited first (an end, a snapshot). The subclass's."""
        raise NotImplementedError

    def due_step(self) -> Union[float, Due]:
        """The step the timer found must be awaited, or a new one: what a tick runs."""
        due, self._due = self._due, None
        return self.step() if due is None else due

    def _fired(self) -> None:
        try:
            step = self.step()
        except Exception:  # the task's own tick meets it again, and fails as a watcher does
            self.wake()
            return
        if isinstance(step, tuple):
            self._due = step
            self.wake()
        elif self._grid is not None:  # always: the wait that set this timer set it
            self.last_progress = time.monotonic()
            self._timer = self._grid.call_later(step, self._fired)
