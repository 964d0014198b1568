"""A watcher's wake-ups: kernel notifications that cut its sleep short.

The system-wide PSI trigger wakes every watcher, and its process's exit (a
pidfd) wakes it at once, so a kill is reported within the second. A change of
its cgroup's OOM counter file (v2 memory.events, v1 memory.oom_control) is
handed to on_counter, which reads the counter before a service manager can
remove the cgroup. A target measured against its cgroup also wakes when that
cgroup nears its limit (a v1 usage threshold, v2 memory.events and
memory.pressure). A v1 threshold is a byte value fixed at
registration, and the limit that applies can change or move to another
ancestor while the process runs, so those subscriptions follow the limit.
What cannot be registered is a problem the target_found record lists.
"""

from __future__ import annotations

import os
from typing import Optional, Protocol, Union

from memdoor.collect.reading import Unreadable
from memdoor.config import ResolvedTarget
from memdoor.pressure import PressureHub, Subscription, Wake
from memdoor.watch.measure import LimitTracker


class Waking(Protocol):
    """What the wake-ups end the sleep of: a watcher."""

    def wake(self) -> None: ...


class Wakeups:
    """A thousand targets keep one each, so it keeps little: it is itself what the
    hub calls (where a closure per watcher took two objects), asking its watcher's
    wake by name, so a wake replaced on the watcher is the one called; and its
    subscriptions, kinds and problems are tuples, the empty one shared."""

    __slots__ = (
        "_kinds",
        "_limit",
        "_limit_key",
        "_problems",
        "_system",
        "hub",
        "target",
        "watcher",
    )

    def __init__(self, hub: Optional[PressureHub], watcher: Waking, target: ResolvedTarget) -> None:
        self.hub = hub
        self.watcher = watcher
        self.target = target
        # The kinds registered, in order, for target_found; and what failed.
        self._kinds: tuple[str, ...] = ()
        self._problems: tuple[Unreadable, ...] = ()
        self._system: tuple[Subscription, ...] = ()
        self._limit: tuple[Subscription, ...] = ()
        # (directory, limit in bytes) of the limit the cgroup wake-ups are registered for.
        self._limit_key: Optional[tuple[str, int]] = None

    def __call__(self) -> None:
        self.watcher.wake()

    @property
    def kinds(self) -> list[str]:
        return list(self._kinds)

    @property
    def problems(self) -> list[Unreadable]:
        return list(self._problems)

    def start(self, proc: str, pid: int, tracker: Optional[LimitTracker], on_counter: Wake) -> None:
        hub = self.hub
        if hub is None:
            return
        system = self._kept(hub.watch_psi(f"{proc}/pressure/memory", self))
        system += self._kept(hub.watch_exit(pid, self))
        if tracker is not None:
            place = tracker.place
            if place.version == 2:
                system += self._kept(hub.watch_v2_events(place.directory, on_counter))
            else:
                system += self._kept(hub.watch_v1_oom(place.directory, on_counter))
        self._system = system
        self.follow_limit(tracker)

    def follow_limit(self, tracker: Optional[LimitTracker]) -> None:
        """Register on the cgroup holding the limit, again whenever the limit moves."""
        hub = self.hub
        if hub is None or self.target.threshold_base == "system":
            return  # the cgroup's events say nothing about RSS against MemTotal
        key = None
        if tracker is not None and tracker.limit is not None and tracker.limit_bytes:
            key = (tracker.limit.directory, tracker.limit_bytes)
        if key == self._limit_key:
            return
        self._cancel(self._limit)
        self._limit = ()
        self._limit_key = key
        if key is None or tracker is None:
            return
        directory, limit_bytes = key
        if tracker.place.version == 1:
            threshold_bytes = limit_bytes * self.target.threshold // 100
            self._limit = self._kept(hub.watch_v1_usage(directory, threshold_bytes, self))
        else:
            pressure = os.path.join(directory, "memory.pressure")
            self._limit = self._kept(hub.watch_v2_events(directory, self))
            self._limit += self._kept(hub.watch_psi(pressure, self, "cgroup_psi"))

    def _kept(self, outcome: Union[Subscription, Unreadable]) -> tuple[Subscription, ...]:
        """The subscription to keep, its kind noted; none where it failed, the problem noted."""
        if isinstance(outcome, Unreadable):
            self._problems += (outcome,)
            return ()
        if outcome.kind not in self._kinds:
            self._kinds += (outcome.kind,)
        return (outcome,)

    @staticmethod
    def _cancel(subscriptions: tuple[Subscription, ...]) -> None:
        for subscription in subscriptions:
            subscription.cancel()

    def cancel(self) -> None:
        self._cancel(self._system)
        self._cancel(self._limit)
        self._system = self._limit = ()
