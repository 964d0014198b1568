"""Wake watchers the moment memory pressure rises, instead of at their next poll.

A fast allocator fills a cgroup in well under a second; polling alone catches it
only if a tick happens to land between the crossing and the kill. The kernel
offers notifications, each optional:

- PSI triggers on /proc/pressure/memory (and a cgroup2 memory.pressure): POLLPRI
  when tasks stall on memory. Windows must be multiples of 2 s without
  CAP_SYS_RESOURCE, and unprivileged users get EACCES on cgroup files.
- cgroup v1 usage thresholds: an eventfd registered through cgroup.event_control
  fires when memory.usage_in_bytes crosses a value — exactly the threshold.
- cgroup v2 memory.events: kernfs signals POLLPRI when a counter changes (high,
  max, oom events); it must be re-read to re-arm.
- cgroup v1 memory.oom_control: an eventfd that fires when the OOM killer acts
  in the cgroup.
- a pidfd (Linux 5.3+): readable once the process has exited, so a watcher
  hears of its process's death at once rather than at its next tick.

All of them go into one private epoll whose fd the event loop watches, because a
PSI fd always polls readable and asyncio's add_reader would spin on it
(systemd-in-a-test.md). What cannot be registered is returned as a value and
polling carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import select
from typing import Callable, Optional, Union

from memdoor.collect.reading import Unreadable, unreadable_from_oserror

# Stall of 50 ms within a 2 s window: the smallest window allowed without
# CAP_SYS_RESOURCE, and a stall short enough to fire while a hog still grows.
PSI_TRIGGER = b"some 50000 2000000"
_EFD_NONBLOCK = 0o4000
_EFD_CLOEXEC = 0o2000000

Wake = Callable[[], None]
# What a source is shared under: (kind of registration, the file or process, a number).
SourceKey = tuple[str, str, int]
# A pidfd stays readable once its process exited: it wakes once.
_ONE_SHOT_IN = select.EPOLLIN | select.EPOLLONESHOT


def _eventfd() -> int:
    """os.eventfd exists from Python 3.10; libc's eventfd(2) serves 3.9."""
    if hasattr(os, "eventfd"):
        return int(os.eventfd(0, _EFD_NONBLOCK | _EFD_CLOEXEC))
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.eventfd(0, _EFD_NONBLOCK | _EFD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


class _Source:
    """One notification: fds[0] is polled for events (EPOLLPRI for PSI and kernfs,
    which always poll readable; EPOLLIN for an eventfd); the other fds stay open
    because closing them would cancel the registration. key is what the hub finds
    it by, set when it is opened, and kept here once rather than by every
    subscription to it."""

    __slots__ = ("events", "fds", "key", "kind", "rearm", "wakes")

    def __init__(
        self, kind: str, fds: tuple[int, ...], events: int, rearm: Optional[Callable[[], None]]
    ) -> None:
        self.kind = kind
        self.fds = fds
        self.events = events
        self.rearm = rearm
        self.key: SourceKey = ("", "", 0)
        self.wakes: list[Wake] = []


class Subscription:
    """One wake-up registered: its kind, for records, and cancel() to drop it.

    Every watcher holds a few (a thousand targets, a few thousand): one small
    object each, where a closure over the same names took three, holding only
    what its source does not already know.
    """

    __slots__ = ("_hub", "_source", "_wake")

    def __init__(self, hub: PressureHub, source: _Source, wake: Wake) -> None:
        self._hub = hub
        self._source = source
        self._wake = wake

    @property
    def kind(self) -> str:
        return self._source.kind

    def cancel(self) -> None:
        self._hub.cancel(self._source, self._wake)


class PressureHub:
    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._by_fd: dict[int, _Source] = {}
        self._by_key: dict[SourceKey, _Source] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self._epoll.fileno(), self._dispatch)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self._epoll.fileno())
        for source in list(self._by_key.values()):
            self._close_source(source)
        self._by_key.clear()
        self._epoll.close()

    def _dispatch(self) -> None:
        for fd, _events in self._epoll.poll(0):
            source = self._by_fd.get(fd)
            if source is None:
                continue
            if source.rearm is not None:
                source.rearm()
            for wake in list(source.wakes):
                wake()

    def subscribe(
        self, key: SourceKey, wake: Wake, opener: Callable[[], _Source], what: str = ""
    ) -> Union[Subscription, Unreadable]:
        """Add wake to the source under key, opening it on first use; what names it
        in the problem an open that failed is (key[1] when not given)."""
        source = self._by_key.get(key)
        if source is None:
            try:
                source = opener()
            except OSError as exc:
                return unreadable_from_oserror(what or key[1], exc)
            # Most sources have one wake (every watcher's pidfd): a list of one, where
            # the first append would make room for four.
            source.key, source.wakes = key, [wake]
            self._by_key[key] = source
            for fd in source.fds[:1]:
                self._by_fd[fd] = source
                self._epoll.register(fd, source.events)
        else:
            source.wakes.append(wake)
        return Subscription(self, source, wake)

    def cancel(self, source: _Source, wake: Wake) -> None:
        """Drop one wake; the last one closes the source (and so the registration)."""
        if wake in source.wakes:
            source.wakes.remove(wake)
        if not source.wakes and self._by_key.get(source.key) is source:
            del self._by_key[source.key]
            self._close_source(source)

    def _close_source(self, source: _Source) -> None:
        if source.fds:
            self._by_fd.pop(source.fds[0], None)
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(source.fds[0])
        for fd in source.fds:
            os.close(fd)

    def watch_psi(
        self, path: str, wake: Wake, kind: str = "psi"
    ) -> Union[Subscription, Unreadable]:
        """A PSI trigger on /proc/pressure/memory ("psi") or a cgroup2 memory.pressure
        (kind "cgroup_psi", so records tell the two apart)."""

        def open_trigger() -> _Source:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                os.write(fd, PSI_TRIGGER + b"\0")
            except OSError:
                os.close(fd)
                raise
            return _Source(kind, (fd,), select.EPOLLPRI, None)

        return self.subscribe(("psi", path, 0), wake, open_trigger)

    def watch_exit(self, pid: int, wake: Wake) -> Union[Subscription, Unreadable]:
        """A pidfd: one wake when the process exits (one-shot, as it stays readable)."""

        def open_pidfd() -> _Source:
            if not hasattr(os, "pidfd_open"):
                raise OSError(errno.ENOSYS, "os.pidfd_open needs Python 3.9 on Linux 5.3+")
            return _Source("exit", (os.pidfd_open(pid),), _ONE_SHOT_IN, None)

        # Every watcher has one: its key names no file, so holds no text of its own.
        return self.subscribe(("exit", "", pid), wake, open_pidfd, f"pidfd of {pid}")

    def watch_v1_usage(
        self, directory: str, threshold_bytes: int, wake: Wake
    ) -> Union[Subscription, Unreadable]:
        """An eventfd that fires when the v1 cgroup's usage crosses threshold_bytes."""
        return self.subscribe(
            ("v1", directory, threshold_bytes),
            wake,
            lambda: _v1_event(directory, "memory.usage_in_bytes", threshold_bytes),
        )

    def watch_v1_oom(self, directory: str, wake: Wake) -> Union[Subscription, Unreadable]:
        """An eventfd that fires when the OOM killer acts in the v1 cgroup."""
        return self.subscribe(
            ("v1-oom", directory, 0), wake, lambda: _v1_event(directory, "memory.oom_control")
        )

    def watch_v2_events(self, directory: str, wake: Wake) -> Union[Subscription, Unreadable]:
        """POLLPRI on memory.events: the cgroup hit memory.high or memory.max."""
        path = os.path.join(directory, "memory.events")

        def open_events() -> _Source:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.pread(fd, 4096, 0)

            def rearm() -> None:
                with contextlib.suppress(OSError):
                    os.pread(fd, 4096, 0)

            return _Source("cgroup_v2_events", (fd,), select.EPOLLPRI, rearm)

        return self.subscribe(("v2", path, 0), wake, open_events)


def _v1_event(directory: str, watched: str, argument: Optional[int] = None) -> _Source:
    """A cgroup v1 event: an eventfd registered through cgroup.event_control on a
    file of the cgroup (with a threshold for memory.usage_in_bytes)."""
    watched_fd = os.open(os.path.join(directory, watched), os.O_RDONLY | os.O_CLOEXEC)
    try:
        event_fd = _eventfd()
    except OSError:
        os.close(watched_fd)
        raise
    line = f"{event_fd} {watched_fd}" + ("" if argument is None else f" {argument}")
    try:
        control = os.open(os.path.join(directory, "cgroup.event_control"), os.O_WRONLY)
        try:
            os.write(control, line.encode())
        finally:
            os.close(control)
    except OSError:
        os.close(event_fd)
        os.close(watched_fd)
        raise

    def drain() -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(event_fd, 8)

    kind = "cgroup_v1_threshold" if argument is not None else "cgroup_v1_oom"
    return _Source(kind, (event_fd, watched_fd), select.EPOLLIN, drain)
