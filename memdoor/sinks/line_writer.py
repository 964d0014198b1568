"""Whole lines to a file descriptor from a thread of its own, so no reader can stall the daemon.

Why a thread and not O_NONBLOCK on fd 1: the non-blocking flag belongs to the
open file description, which fd 1 shares with whoever handed it over (the
shell's terminal, the parent's pipe, systemd's journal stream): setting it
would make the shell's next `cat` fail with EAGAIN. Reopening
/proc/self/fd/1 gives a description of our own for a pipe or a terminal, but
not for a socket (ENXIO), and for a regular file it would write from offset 0.
Regular files, FUSE and network file systems never say EAGAIN at all: a hung
NFS server blocks a write whatever the flags. A thread doing ordinary blocking
writes works for every kind of fd and leaves its flags as they were; the
daemon's loop only ever appends to a queue.

The queue is bounded in bytes. A line that does not fit is dropped whole and
counted by the caller; a line that was accepted is written whole (a partial
write is finished before the next line starts), so the stream never carries
half a JSON line followed by another one. A line is accepted into an empty
queue whatever its size, so a multi-megabyte record still gets out when the
reader keeps up.

Write errors (EPIPE, ENOSPC, EBADF...) end the writer: what is queued is
discarded and later lines are refused. The error is handed to the event loop
that first queued a line; a pipe whose reader had gone while the queue was
empty is found by the next line before it is queued.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import os
import select
import threading
import time
from collections import deque
from typing import Callable, Literal, Optional

PutOutcome = Literal["queued", "dropped", "failed"]
ErrorReporter = Callable[[str], None]

# How long the interpreter's exit waits for queued lines when nobody closed the
# writer (a one-shot command that wrote a record and returned).
EXIT_DRAIN_SECONDS = 0.5


def error_text(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _reader_gone(fd: int) -> Optional[OSError]:
    """A pipe with no reader polls POLLERR; an fd that was closed polls POLLNVAL."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    for _fd, events in poller.poll(0):
        if events & select.POLLNVAL:
            return OSError(errno.EBADF, os.strerror(errno.EBADF))
        if events & select.POLLERR:
            return OSError(errno.EPIPE, os.strerror(errno.EPIPE))
    return None


def _write_whole(fd: int, data: bytes) -> None:
    """Write every byte, blocking. An fd someone else made non-blocking waits in poll."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll()


class LineWriter:
    """One fd, one daemon thread started with the first line, one bounded queue."""

    def __init__(self, fd: int, limit: int, name: str) -> None:
        self.fd = fd
        self.limit = limit
        self.name = name
        # Called on the event loop with the error's text when a write fails.
        self.on_error: Optional[ErrorReporter] = None
        self.error: Optional[str] = None
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._closing = False
        self._changed = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    @property
    def idle(self) -> bool:
        """Nothing queued nor being written: the reader has taken every line so far."""
        with self._changed:
            return not self._pending

    def put(self, line: str) -> PutOutcome:
        """Queue line plus a newline; never waits for the reader.

        The line is encoded as UTF-8 whatever the locale (JSON's encoding); a
        lone surrogate, which only a bug upstream can leave, becomes a \\u
        escape rather than an exception or bytes that are not UTF-8.
        """
        data = (line + "\n").encode("utf-8", "backslashreplace")
        with self._changed:
            if self.error is None and not self._pending:
                gone = _reader_gone(self.fd)
                if gone is not None:
                    self.error = error_text(gone)
            if self.error is not None or self._closing:
                return "failed"
            if self._pending and self._pending_bytes + len(data) > self.limit:
                return "dropped"
            self._pending.append(data)
            self._pending_bytes += len(data)
            self._start()
            self._changed.notify_all()
        return "queued"

    def drain(self, timeout: float) -> bool:
        """Wait up to timeout for every queued line to be written; True if they were."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._pending and self.error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return self.error is None

    def close(self, timeout: float) -> bool:
        """Drain for at most timeout, then stop taking lines; the thread ends once idle.

        A thread stuck in a write to a reader that never reads is left there:
        it is a daemon thread and does not hold up the exit.
        """
        drained = self.drain(timeout)
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        atexit.unregister(self._drain_at_exit)
        return drained

    def _start(self) -> None:
        if self._thread is not None:
            return
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        atexit.register(self._drain_at_exit)

    def _drain_at_exit(self) -> None:
        self.drain(EXIT_DRAIN_SECONDS)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._pending and not self._closing:
                    self._changed.wait()
                if not self._pending:
                    return
                data = self._pending[0]
            try:
                _write_whole(self.fd, data)
            except OSError as exc:
                self._failed(exc)
                return
            with self._changed:
                self._pending.popleft()
                self._pending_bytes -= len(data)
                self._changed.notify_all()

    def _failed(self, exc: OSError) -> None:
        with self._changed:
            self.error = error_text(exc)
            self._pending.clear()
            self._pending_bytes = 0
            self._changed.notify_all()
        loop, report = self._loop, self.on_error
        if loop is not None and report is not None:
            # The loop may have closed meanwhile (an error met while exiting).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._report)

    def _report(self) -> None:
        """On the loop: hand the error to whoever owns the writer now (it may have changed)."""
        if self.on_error is not None and self.error is not None:
            self.on_error(self.error)
