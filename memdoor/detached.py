"""A blocking call run in a thread of its own, awaited without ever holding the daemon.

Why not asyncio.to_thread: the threads of its pool are joined when asyncio.run
ends and again at interpreter exit, so one call stuck in the kernel (a pidfile on
an NFS server that went away, a FUSE file system that never answers) would keep
`memdoor run` alive after SIGTERM until systemd killed it. A daemon thread is never
joined: the task awaiting it is cancelled at once, and the process exits with the
thread still blocked. A thread per call costs some tens of microseconds, next to
the file system reads it makes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")


async def call_detached(function: Callable[..., T], *args: Any) -> T:
    """function(*args) in a new daemon thread; its result or its exception, here."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting task, as to_thread would
            _deliver(loop, _set_exception, outcome, exc)
        else:
            _deliver(loop, _set_result, outcome, result)

    name = f"memdoor {getattr(function, '__name__', 'call')}"
    threading.Thread(target=work, name=name, daemon=True).start()
    return await outcome


def _deliver(loop: asyncio.AbstractEventLoop, setter: Callable[..., None], *args: Any) -> None:
    # RuntimeError: the loop closed while the call ran, and nobody waits for it any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(setter, *args)


def _set_result(outcome: asyncio.Future[T], result: T) -> None:
    if not outcome.done():  # done: the awaiting task was cancelled
        outcome.set_result(result)


def _set_exception(outcome: asyncio.Future[Any], error: BaseException) -> None:
    if not outcome.done():
        outcome.set_exception(error)
