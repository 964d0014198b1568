"""Watchers' sleeps that end together share one timer of the event loop.

A thousand targets far below their thresholds tick about five hundred times a
second. Each sleep on its own timer costs a handle, a push and a pop on the
loop's heap of a thousand (Python-level comparisons) and a wake-up of the loop.
A wait of at least COALESCE_FROM seconds here ends on the next multiple of
COALESCE_GRID of the loop's clock instead, in a slot shared by every sleep that
ends there: the loop wakes about twenty times a second, one timer per slot, and
no tick is more than 5% late. Shorter waits, near a threshold, get a timer of
their own and end when asked.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable
from typing import Protocol

COALESCE_GRID = 0.05
COALESCE_FROM = 1.0

Wake = Callable[[], None]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


def wake_time(now: float, delay: float) -> float:
    """When a sleep of delay from now ends (on the loop's clock)."""
    end = now + delay
    if delay < COALESCE_FROM:
        return end
    on_grid = math.ceil(end / COALESCE_GRID) * COALESCE_GRID
    # The division may round down onto a step just below end (0.75 + 1.0000000000000002
    # gave 1.75): the next step then, so that a sleep never ends early.
    return on_grid if on_grid >= end else on_grid + COALESCE_GRID


class _InSlot:
    """One sleep's place in a shared slot; cancel() takes it out."""

    __slots__ = ("slot", "wake")

    def __init__(self, slot: dict[Wake, None], wake: Wake) -> None:
        self.slot = slot
        self.wake = wake

    def cancel(self) -> None:
        self.slot.pop(self.wake, None)


class WakeGrid:
    """The slots of one event loop: end time -> the wake-ups due then, in order."""

    __slots__ = ("_slots", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._slots: dict[float, dict[Wake, None]] = {}

    def call_later(self, delay: float, wake: Wake) -> Cancellable:
        """Call wake after delay (on the grid when it is long enough); cancel() to drop it."""
        loop = self.loop
        when = wake_time(loop.time(), delay)
        if delay < COALESCE_FROM:
            return loop.call_at(when, wake)
        slot = self._slots.get(when)
        if slot is None:
            slot = self._slots[when] = {}
            loop.call_at(when, self._fire, when)
        slot[wake] = None
        return _InSlot(slot, wake)

    def _fire(self, when: float) -> None:
        """Every wake-up of the slot; one that raises does not keep the others asleep."""
        for wake in list(self._slots.pop(when, {})):
            try:
                wake()
            except Exception as exc:  # reported as the loop reports a failed callback
                self.loop.call_exception_handler(
                    {"message": "a watcher's wake-up failed", "exception": exc}
                )


_GRIDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WakeGrid] = weakref.WeakKeyDictionary()


def wake_grid() -> WakeGrid:
    """The running loop's grid (each loop has its own: tests run many loops)."""
    loop = asyncio.get_running_loop()
    grid = _GRIDS.get(loop)
    if grid is None:
        grid = _GRIDS[loop] = WakeGrid(loop)
    return grid
