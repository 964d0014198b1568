"""Routine snapshots wait their turn here, not in the worker threads' queue.

Far below its threshold a process's kept snapshot is refreshed now and then.
At start, and whenever many watchers' timers end together, a thousand targets
ask for one at once. Queued for the worker threads, each waited as a job, two
futures and a copy of the context beside the watcher's suspended tick: at the
start of 1,000 targets about 35,000 objects at once, given back within two
seconds. That peak stayed in the daemon's RSS for good (5 to 7 MiB), because
Python keeps an arena that still holds one object. Waiting here costs one
future each.

It also keeps the queue short for what is urgent: a snapshot near or above the
threshold does not wait here, and finds at most SNAPSHOT_THREADS routine ones
ahead of it.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from memdoor.worker_threads import SNAPSHOT_THREADS


class SnapshotSlots:
    """As many routine snapshots in the worker threads' hands as there are threads."""

    __slots__ = ("_loop", "_semaphore")

    def __init__(self) -> None:
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._semaphore: Optional[asyncio.Semaphore] = None

    def routine(self) -> asyncio.Semaphore:
        """The running loop's semaphore, made in it: on 3.9 a semaphore belongs to
        the loop current when it is made, and tests run one loop after another."""
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._loop is not loop:
            self._loop, self._semaphore = loop, asyncio.Semaphore(SNAPSHOT_THREADS)
        return self._semaphore
