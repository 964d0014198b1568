"""Who a pid is: name, parent, executable, command line and start time.

The start time is what lets every later step tell "the same process" from "a new
process that got the same pid" (pid reuse).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Optional, Union

from memdoor.collect.reading import Unreadable, read_bytes, read_link, read_parsed, read_text
from memdoor.process_text import decode, to_bytes
from memdoor.procfs.cmdline import parse_cmdline
from memdoor.procfs.stat import ProcStat, parse_stat
from memdoor.vocabulary import decimal

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DELETED_SUFFIX = " (deleted)"


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    ppid: int
    name: str
    start_ticks: int
    started_at: Optional[float]
    exe: Optional[str]
    exe_deleted: bool
    cmdline: list[str]


def read_stat(pid: int, proc: str = "/proc") -> Union[ProcStat, Unreadable]:
    return read_parsed(f"{proc}/{pid}/stat", parse_stat)


@functools.cache
def boot_time(proc: str = "/proc") -> Optional[float]:
    """Boot time in epoch seconds from /proc/stat btime; constant while the host runs."""
    text = read_text(f"{proc}/stat")
    if isinstance(text, Unreadable):
        return None
    for line in text.splitlines():
        if line.startswith("btime "):
            seconds = decimal(line.split()[1])
            return None if seconds is None else float(seconds)
    return None


def read_exe(pid: int, proc: str = "/proc") -> Union[tuple[str, bool], Unreadable]:
    """The executable path and whether it was deleted (replaced by a package upgrade).

    The path is in memdoor.process_text's form; the suffix comes off its bytes,
    so a path in the escaped form stays in it.
    """
    link = read_link(f"{proc}/{pid}/exe")
    if isinstance(link, Unreadable):
        return link
    if link.endswith(DELETED_SUFFIX):
        return decode(to_bytes(link)[: -len(DELETED_SUFFIX)]), True
    return link, False


def read_identity(
    pid: int, stat: ProcStat, problems: list[Unreadable], proc: str = "/proc"
) -> ProcessIdentity:
    """Build the identity from an already-read stat, noting what else failed in problems."""
    exe = read_exe(pid, proc)
    if isinstance(exe, Unreadable):
        problems.append(exe)
        exe_path, deleted = None, False
    else:
        exe_path, deleted = exe
    raw_cmdline = read_bytes(f"{proc}/{pid}/cmdline")
    if isinstance(raw_cmdline, Unreadable):
        problems.append(raw_cmdline)
        cmdline: list[str] = []
    else:
        cmdline = parse_cmdline(raw_cmdline)
    booted = boot_time(proc)
    return ProcessIdentity(
        pid=pid,
        ppid=stat.ppid,
        name=stat.comm,
        start_ticks=stat.start_ticks,
        started_at=None if booted is None else booted + stat.start_ticks / CLOCK_TICKS,
        exe=exe_path,
        exe_deleted=deleted,
        cmdline=cmdline,
    )
