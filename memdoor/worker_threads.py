"""The daemon's worker threads (snapshots): daemon threads, so a read that never
returns cannot keep the process alive after SIGTERM.

Reading /proc/PID/smaps takes the process's mmap lock; a process stuck in the
kernel (a D-state fault on a hung NFS or FUSE file, a long munmap under memory
pressure, the very moment memdoor reports on) holds it for as long as it likes.
A worker thread blocked there cannot be interrupted. The standard
ThreadPoolExecutor would then hold up the exit twice: asyncio.run waits for
loop.shutdown_default_executor(), which joins every worker (without a limit
up to 3.11, for 300 s from 3.12), and concurrent.futures joins its workers
again at interpreter exit, since 3.9 with no limit at all. These workers are
daemon threads that no exit hook joins, and shutdown() never waits for a busy
one: the work of a stopping daemon has nobody left to deliver it to.

It subclasses ThreadPoolExecutor only because asyncio accepts nothing else as
the default executor (a TypeError from 3.11, a DeprecationWarning on 3.9 and
3.10); the base class's own workers are never started, since submit and
shutdown are replaced.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")

# The daemon's snapshot threads: a snapshot is mostly the kernel's work, and the
# host's other processes share its cores.
SNAPSHOT_THREADS = 2

_Job = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreadPool(concurrent.futures.ThreadPoolExecutor):
    def __init__(self, max_workers: int, name: str) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=name)
        self._limit = max_workers
        self._name = name
        self._jobs: queue.SimpleQueue[Optional[_Job]] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._guard = threading.Lock()
        self._closed = False

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        with self._guard:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future: concurrent.futures.Future[T] = concurrent.futures.Future()
            self._jobs.put((future, fn, args, kwargs))
            if len(self._workers) < self._limit:
                worker = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self._workers)}", daemon=True
                )
                self._workers.append(worker)
                worker.start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new work and cancel what has not started, whatever wait and
        cancel_futures say: a worker busy in a read the kernel never completes is
        left to end with the process."""
        with self._guard:
            self._closed = True
            while True:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job[0].cancel()
            for _worker in self._workers:
                self._jobs.put(None)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to whoever awaits the future
                future.set_exception(exc)
            else:
                future.set_result(result)
