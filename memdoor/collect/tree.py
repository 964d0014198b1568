"""The chain of parents from a process up to PID 1.

Who started a process is part of why it died (a runaway worker, a cron job); the
chain is read bottom-up and stops at PID 1 or at a parent that vanished mid-walk.
"""

from __future__ import annotations

from dataclasses import dataclass

from memdoor.collect.identity import read_stat
from memdoor.collect.reading import Unreadable

# A pid namespace can make ppid loops impossible in theory, but a corrupted or
# racing read must never spin forever.
MAX_DEPTH = 4096


@dataclass(frozen=True)
class Ancestor:
    pid: int
    name: str


def read_ancestry(ppid: int, problems: list[Unreadable], proc: str = "/proc") -> list[Ancestor]:
    """Parents of a process whose own stat gave ppid, nearest first."""
    chain: list[Ancestor] = []
    seen: set[int] = set()
    pid = ppid
    while pid > 0 and pid not in seen and len(chain) < MAX_DEPTH:
        seen.add(pid)
        stat = read_stat(pid, proc)
        if isinstance(stat, Unreadable):
            problems.append(stat)
            break
        chain.append(Ancestor(pid=pid, name=stat.comm))
        pid = stat.ppid
    return chain
