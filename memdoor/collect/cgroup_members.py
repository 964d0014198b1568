"""The processes of a cgroup and its descendants, and the largest of them, bounded.

systemd-oomd's pre-kill hook names a cgroup it is about to kill with all its
descendants; the hook has a second or so. A cgroup tree is the caller's to
shape (a delegated unit makes as many children as it likes), so the walk stops
after MAX_DIRECTORIES directories and MAX_PROCESSES processes, and says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Union

from memdoor.collect.memory import read_rss_kb
from memdoor.collect.reading import Unreadable, read_text

MAX_DIRECTORIES = 256
MAX_PROCESSES = 4096


@dataclass(frozen=True)
class Members:
    pids: frozenset[int]
    # The walk stopped at a bound: there may be more.
    cut: bool


def cgroup_members(directory: str) -> Union[Members, Unreadable]:
    """Every pid in cgroup.procs of directory and the directories below it."""
    pending, seen = [directory], 0
    pids: set[int] = set()
    while pending:
        if seen >= MAX_DIRECTORIES or len(pids) >= MAX_PROCESSES:
            return Members(frozenset(pids), True)
        current = pending.pop()
        seen += 1
        text = read_text(os.path.join(current, "cgroup.procs"))
        if isinstance(text, Unreadable):
            if current == directory:
                return text
            continue  # removed or denied while walking: its processes are not seen
        pids.update(int(word) for word in text.split() if word.isdigit())
        try:
            with os.scandir(current) as entries:
                pending += [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    return Members(frozenset(list(pids)[:MAX_PROCESSES]), len(pids) > MAX_PROCESSES)


def largest(pids: frozenset[int], count: int, proc: str = "/proc") -> list[int]:
    """The count pids with the most resident memory, largest first; gone ones left out."""
    sizes = []
    for pid in pids:
        rss = read_rss_kb(pid, proc)
        if not isinstance(rss, Unreadable):
            sizes.append((rss, pid))
    return [pid for _rss, pid in sorted(sizes, reverse=True)[:count]]
