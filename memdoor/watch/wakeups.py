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
from typing import Optional, Union

from memdoor.collect.reading import Unreadable
from memdoor.config import ResolvedTarget
from memdoor.pressure import PressureHub, Subscription, Wake
from memdoor.watch.measure import LimitTracker


class Wakeups:
    __slots__ = ("_limit", "_limit_key", "_system", "hub", "kinds", "problems", "target", "wake")

    def __init__(self, hub: Optional[PressureHub], wake: Wake, target: ResolvedTarget) -> None:
        self.hub = hub
        self.wake = wake
        self.target = target
        # The kinds registered, in order, for target_found; and what failed.
        self.kinds: list[str] = []
        self.problems: list[Unreadable] = []
        self._system: list[Subscription] = []
        self._limit: list[Subscription] = []
        # (directory, limit in bytes) of the limit the cgroup wake-ups are registered for.
        self._limit_key: Optional[tuple[str, int]] = None

    def start(self, proc: str, pid: int, tracker: Optional[LimitTracker], on_counter: Wake) -> None:
        hub = self.hub
        if hub is None:
            return
        self._keep(self._system, hub.watch_psi(f"{proc}/pressure/memory", self.wake))
        self._keep(self._system, hub.watch_exit(pid, self.wake))
        if tracker is not None:
            place = tracker.place
            if place.version == 2:
                self._keep(self._system, hub.watch_v2_events(place.directory, on_counter))
            else:
                self._keep(self._system, hub.watch_v1_oom(place.directory, on_counter))
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
        self._limit_key = key
        if key is None or tracker is None:
            return
        directory, limit_bytes = key
        if tracker.place.version == 1:
            threshold_bytes = limit_bytes * self.target.threshold // 100
            self._keep(self._limit, hub.watch_v1_usage(directory, threshold_bytes, self.wake))
        else:
            self._keep(self._limit, hub.watch_v2_events(directory, self.wake))
            pressure = os.path.join(directory, "memory.pressure")
            self._keep(self._limit, hub.watch_psi(pressure, self.wake, "cgroup_psi"))

    def _keep(self, into: list[Subscription], outcome: Union[Subscription, Unreadable]) -> None:
        if isinstance(outcome, Unreadable):
            self.problems.append(outcome)
            return
        into.append(outcome)
        if outcome.kind not in self.kinds:
            self.kinds.append(outcome.kind)

    @staticmethod
    def _cancel(subscriptions: list[Subscription]) -> None:
        for subscription in subscriptions:
            subscription.cancel()
        subscriptions.clear()

    def cancel(self) -> None:
        self._cancel(self._system)
        self._cancel(self._limit)
