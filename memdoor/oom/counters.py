"""The cgroup OOM kill counters of one watched process, read so they outlive the cgroup.

The counter lives in the cgroup's directory, and a service manager removes a
unit's cgroup about a millisecond after its last process died (measured with
systemd 252, v1 and v2), often before the process's watcher reads it. So the
counter is read three ways, the first that answers wins:
- at the process's exit, if the cgroup is still there;
- when the cgroup's own counter file changed (v2 memory.events POLLPRI, v1
  memory.oom_control eventfd), from the event loop, at the kill itself;
- on cgroup v2, from the hierarchical memory.events of the parent, which
  survives the unit's removal and counts its descendants' kills. A rise there
  is attributed to the process that died with its cgroup; a sibling's kill in
  the same moments would be mistaken for it, which the record's file name
  (the parent's) lets a reader weigh.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

from memdoor.collect.cgroup import (
    MemoryCgroup,
    OomKillCount,
    read_oom_kill_count,
    read_subtree_oom_kills,
)
from memdoor.collect.reading import Unreadable

# How often the parent's counter is read again while the process lives: its
# baseline, so a kill of a sibling minutes ago is not taken for this one's.
PARENT_REBASE_SECONDS = 5.0
# Past this many parents remembered, the readings too old to share are let go.
_PARENTS_KEPT = 64


@dataclass(frozen=True)
class CounterRise:
    before: Optional[int]
    after: Optional[int]
    # The counter file after was read from.
    file: Optional[str]

    @property
    def rose(self) -> bool:
        before, after = self.before, self.after
        return before is not None and after is not None and after > before


class ParentKillCounts:
    """The v2 parents' hierarchical kill counts, the baselines of the processes below.

    A reading under PARENT_REBASE_SECONDS old serves every watched process under
    that parent: a thousand processes of one slice read its memory.events once
    every few seconds rather than two hundred times a second. A reading taken
    before a process was last seen alive is a baseline for it as much as its own.
    """

    __slots__ = ("_read",)

    def __init__(self) -> None:
        # parent directory -> (when it was read, what it counted: None if unreadable).
        self._read: dict[str, tuple[float, Optional[OomKillCount]]] = {}

    def baseline(self, parent: str, now: float) -> Optional[OomKillCount]:
        """The parent's count read at most PARENT_REBASE_SECONDS before now."""
        read = self._read.get(parent)
        if read is not None and now - read[0] < PARENT_REBASE_SECONDS:
            return read[1]
        counted = read_subtree_oom_kills(parent)
        if len(self._read) >= _PARENTS_KEPT:
            self._read = {
                directory: kept
                for directory, kept in self._read.items()
                if now - kept[0] < PARENT_REBASE_SECONDS
            }
        self._read[parent] = (now, None if isinstance(counted, Unreadable) else counted)
        return self._read[parent][1]


class CgroupKillCounters:
    __slots__ = ("_latest", "_parent", "_parent_before", "_parents", "before", "place")

    def __init__(self, place: MemoryCgroup, parents: Optional[ParentKillCounts] = None) -> None:
        """parents: the daemon's, shared by every watched process; without, its own."""
        self.place = place
        # The own counter when the process was last seen alive and not dying.
        self.before: Optional[int] = None
        # The newest reading of the own counter, from a change notification.
        self._latest: Optional[OomKillCount] = None
        self._parent = _parent_directory(place)
        self._parent_before: Optional[OomKillCount] = None
        self._parents = None
        if self._parent is not None:
            self._parents = ParentKillCounts() if parents is None else parents

    def alive(self, own: Optional[int]) -> None:
        """The process was seen alive without SIGKILL pending: every kill counted up
        to now was someone else's, and own is the tracker's latest reading."""
        known = [count for count in (own, self._latest and self._latest.kills) if count is not None]
        if known:
            self.before = max(known)
        if self._parent is not None and self._parents is not None:
            self._parent_before = self._parents.baseline(self._parent, time.monotonic())

    def changed(self) -> bool:
        """The own counter file signalled: read it now, while the cgroup exists.
        True when the OOM kill count moved."""
        counted = read_oom_kill_count(self.place)
        if isinstance(counted, Unreadable):
            return False
        previous, self._latest = self._latest, counted
        return previous is None or previous.kills != counted.kills

    def at_exit(self) -> CounterRise:
        """The counter as the process's exit left it: read now if the cgroup is still
        there, else the reading taken at the kill, else the parent's."""
        counted = read_oom_kill_count(self.place)
        if not isinstance(counted, Unreadable):
            return CounterRise(self.before, counted.kills, counted.file)
        latest = self._latest
        if latest is not None and self.before is not None and latest.kills > self.before:
            return CounterRise(self.before, latest.kills, latest.file)
        parent_before = self._parent_before
        if self._parent is not None and parent_before is not None:
            parent = read_subtree_oom_kills(self._parent)
            if not isinstance(parent, Unreadable) and parent.kills > parent_before.kills:
                return CounterRise(parent_before.kills, parent.kills, parent.file)
        return CounterRise(self.before, None, None)


def _parent_directory(place: MemoryCgroup) -> Optional[str]:
    """The v2 parent whose memory.events counts this cgroup's kills hierarchically;
    none for v1, which counts per cgroup, or for the top cgroup visible here. The
    host's root cgroup has no memory.events: reading it fails and is no baseline."""
    if place.version != 2 or place.directory == place.top:
        return None
    return os.path.dirname(place.directory)
