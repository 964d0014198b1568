"""Writes to watched pidfiles, heard through one inotify instance for the whole daemon.

A service restarted after an OOM kill writes its new pid into its pidfile, and a
process that fills its memory at full speed can be killed again a second or two
later. Re-reading the pidfile only on the target's interval (5 s by default) would
find it after that kill or never, and its evidence would be lost; so each pidfile
target listens for a finished write (IN_CLOSE_WRITE) or a rename into place
(IN_MOVED_TO) of its pidfile's name in its directory, and resolves at once.

The event only wakes a resolution: the pidfile is still read through memdoor.pidfile,
with every check, so a directory swapped after the watch was added gains nothing.
A write that never closes the file (a daemon holding its pidfile open) or a pidfile
on a network file system, where inotify hears local writes only, is still read on
the interval. Without inotify (no more instances or watches for root) targets
resolve on their interval alone, as they did before.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import struct
from collections.abc import Iterator
from typing import Callable, Optional

_IN_CLOSE_WRITE = 0x8
_IN_MOVED_TO = 0x80
_IN_Q_OVERFLOW = 0x4000
_IN_IGNORED = 0x8000
_IN_ONLYDIR = 0x01000000
_HEARD = _IN_CLOSE_WRITE | _IN_MOVED_TO
# struct inotify_event: wd, mask, cookie, len, then len bytes of NUL-padded name.
_EVENT = struct.Struct("iIII")
# Enough for a few hundred events a read; more wait for the next readable callback.
_READ_BYTES = 64 * 1024

_libc = ctypes.CDLL(None, use_errno=True)


def parse_events(buffer: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(wd, mask, name) of each whole event in what a read of an inotify fd returned;
    a truncated tail (never produced by the kernel) is ignored."""
    offset = 0
    while offset + _EVENT.size <= len(buffer):
        wd, mask, _cookie, length = _EVENT.unpack_from(buffer, offset)
        start = offset + _EVENT.size
        if start + length > len(buffer):
            return
        yield wd, mask, buffer[start : start + length].split(b"\0", 1)[0]
        offset = start + length


class PidfileChanges:
    """Which pidfile names of which watched directories wake which supervisor.

    add_watch is the one blocking call (it looks a path up): supervisors make it in
    their resolution thread. Everything else runs on the event loop.
    """

    def __init__(self) -> None:
        self._fd: Optional[int] = None
        # Watch descriptor -> pidfile name in that directory -> the wakes listening.
        self._listeners: dict[int, dict[bytes, list[Callable[[], None]]]] = {}
        # Descriptors of watches the kernel dropped: never given out again.
        self._gone: set[int] = set()

    def open(self, loop: asyncio.AbstractEventLoop) -> Optional[str]:
        """The inotify instance, read on loop; or why there is none (then targets read
        their pidfiles on their interval only)."""
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return os.strerror(ctypes.get_errno())
        self._fd = fd
        loop.add_reader(fd, self._read)
        return None

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._fd is not None:
            loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None
        self._listeners.clear()

    def add_watch(self, directory: str) -> Optional[int]:
        """The watch descriptor of directory (the same one for every pidfile in it), None
        if it cannot be watched (not a directory, gone, no inotify). Blocking: it looks
        the path up."""
        if self._fd is None:
            return None
        wd = _libc.inotify_add_watch(self._fd, os.fsencode(directory), _HEARD | _IN_ONLYDIR)
        return wd if wd >= 0 else None

    def listen(self, wd: int, name: str, wake: Callable[[], None]) -> bool:
        """Wake on each write to name in wd's directory; False if the watch is already
        gone (the directory was removed since add_watch): the caller watches again."""
        if wd in self._gone:
            return False
        self._listeners.setdefault(wd, {}).setdefault(os.fsencode(name), []).append(wake)
        return True

    def hears(self, wd: int) -> bool:
        """False once the kernel dropped the watch (its directory removed or unmounted)."""
        return wd in self._listeners

    def forget(self, wd: int, name: str, wake: Callable[[], None]) -> None:
        """Stop waking wake. The directory stays watched, unheard, until the daemon ends:
        removing the watch would race with another target's thread adding it again
        (the kernel gives both the same descriptor), and a reload leaves a few at most."""
        wakes = self._listeners.get(wd, {}).get(os.fsencode(name))
        if wakes is not None and wake in wakes:
            wakes.remove(wake)

    def _read(self) -> None:
        assert self._fd is not None
        try:
            buffer = os.read(self._fd, _READ_BYTES)
        except BlockingIOError:
            return
        for wd, mask, name in parse_events(buffer):
            if mask & _IN_Q_OVERFLOW:
                # Events were lost: any pidfile may have been written.
                for names in list(self._listeners.values()):
                    self._wake_all(names)
            elif mask & _IN_IGNORED:
                # The watch is gone: its listeners resolve now and watch again.
                self._gone.add(wd)
                self._wake_all(self._listeners.pop(wd, {}))
            else:
                for wake in list(self._listeners.get(wd, {}).get(name, ())):
                    wake()

    @staticmethod
    def _wake_all(names: dict[bytes, list[Callable[[], None]]]) -> None:
        for wakes in list(names.values()):
            for wake in list(wakes):
                wake()


class PidfileListener:
    """One pidfile target's ear: its pause between resolutions, cut short by a write.

    A write during a resolution is not lost: it is remembered until the next pause,
    which then ends after min_interval. min_interval also bounds how often a process
    rewriting its pidfile in a loop can make memdoor resolve it.
    """

    def __init__(self, changes: PidfileChanges, pidfile: str) -> None:
        self._changes = changes
        self._directory, self._name = os.path.split(pidfile)
        self._wd: Optional[int] = None
        self._written = False
        self._pause: Optional[asyncio.Future[None]] = None

    def needs_watch(self) -> bool:
        return self._wd is None or not self._changes.hears(self._wd)

    def add_watch(self) -> Optional[int]:
        """Blocking, in the resolution's thread, before the pidfile is read: a write
        after the watch is heard, one before it is read."""
        return self._changes.add_watch(self._directory)

    def listen(self, wd: int) -> None:
        """Called only while needs_watch(): no watch is listened to before this one."""
        self._wd = wd if self._changes.listen(wd, self._name, self._heard) else None

    def close(self) -> None:
        if self._wd is not None:
            self._changes.forget(self._wd, self._name, self._heard)
            self._wd = None

    async def pause(self, interval: float, min_interval: float) -> None:
        """interval, or min_interval (at least) until a write to the pidfile is heard."""
        await asyncio.sleep(min(min_interval, interval))
        if not self._written:
            loop = asyncio.get_running_loop()
            woken: asyncio.Future[None] = loop.create_future()
            self._pause = woken
            handle = loop.call_later(max(0.0, interval - min_interval), _end, woken)
            try:
                await woken
            finally:
                handle.cancel()
                self._pause = None
        self._written = False

    def _heard(self) -> None:
        self._written = True
        if self._pause is not None:
            _end(self._pause)


def _end(pause: asyncio.Future[None]) -> None:
    if not pause.done():
        pause.set_result(None)
