"""Who a pid is: name, parent, executable, command line and start time; and where
its files are read.

The start time is what lets every later step tell "the same process" from "a new
process that got the same pid" (pid reuse).

A thread group lives as long as any of its threads. When the main thread calls
pthread_exit() while others run (and grow), the leader stays behind as a
zombie: /proc/PID/stat says Z, and the files that describe the process are
empty or fail (statm all zeros, no VmRSS in status, empty smaps, maps and
cmdline, no exe or fd links) or mislead (cgroup names the root). Each
thread's /proc/PID/task/TID holds the same files for the same memory,
descriptors, cgroup and network namespace, so such a process is read through
a thread that still runs, as ps does (ProcessTask). Who it is (pid, name,
parent, start time) still comes from the leader, whose stat outlives it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Optional, Union

from memdoor.collect.reading import (
    Unreadable,
    list_dir,
    read_bytes,
    read_link,
    read_parsed,
    read_text,
)
from memdoor.process_text import decode, to_bytes
from memdoor.procfs.cmdline import parse_cmdline
from memdoor.procfs.stat import ProcStat, parse_stat
from memdoor.slotted import slotted
from memdoor.vocabulary import decimal

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DELETED_SUFFIX = " (deleted)"


@slotted
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


@slotted
@dataclass(frozen=True)
class ProcessTask:
    """The directory a process is read through: {proc}/{tid}.

    tid and proc are the pid and "/proc" while the leader runs, else a live
    thread's id and "/proc/PID/task": a thread's directory is laid out like a
    process's, so every reader taking (pid, proc) reads the thread when given
    (tid, proc). stat is the process's stat as this task shows it: who from the
    leader (pid, comm, ppid, start time), how from the task (state, flags,
    pending signals).
    """

    tid: int
    proc: str
    stat: ProcStat


def live_task(pid: int, leader: ProcStat, proc: str = "/proc") -> Optional[ProcessTask]:
    """Where to read process pid, whose leader's stat is leader: the leader's own
    directory while it runs, else the first thread that has not exited (the one
    the OOM killer would pick too); None once every thread has exited.

    Costs nothing while the leader runs: threads are listed only once it exited.
    """
    if not leader.exited:
        return ProcessTask(pid, proc, leader)
    threads = f"{proc}/{pid}/task"
    names = list_dir(threads)
    if isinstance(names, Unreadable):
        return None
    for name in names:
        tid = decimal(name)
        if tid is None or tid == pid:
            continue
        thread = read_stat(tid, threads)
        if not isinstance(thread, Unreadable) and not thread.exited:
            stat = dataclasses.replace(
                leader,
                state=thread.state,
                flags=thread.flags,
                pending_signals=thread.pending_signals,
            )
            return ProcessTask(tid, threads, stat)
    return None


def where_to_read(pid: int, proc: str = "/proc") -> tuple[int, str]:
    """(tid, proc) naming the directory to read pid through now: a live thread's when
    its leader exited, else its own (whose files then fail as an ended process's do)."""
    leader = read_stat(pid, proc)
    task = None if isinstance(leader, Unreadable) else live_task(pid, leader, proc)
    return (pid, proc) if task is None else (task.tid, task.proc)


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

    A leader that exited while its threads run has no exe link; a live thread has.
    The path is in memdoor.process_text's form; the suffix comes off its bytes,
    so a path in the escaped form stays in it.
    """
    link = read_link(f"{proc}/{pid}/exe")
    if isinstance(link, Unreadable) and link.reason == "vanished":
        tid, where = where_to_read(pid, proc)
        if tid != pid:
            link = read_link(f"{where}/{tid}/exe")
    if isinstance(link, Unreadable):
        return link
    if link.endswith(DELETED_SUFFIX):
        return decode(to_bytes(link)[: -len(DELETED_SUFFIX)]), True
    return link, False


def read_identity(
    pid: int, stat: ProcStat, problems: list[Unreadable], proc: str = "/proc"
) -> ProcessIdentity:
    """Build the identity from an already-read stat of the leader, noting what else
    failed in problems."""
    task = live_task(pid, stat, proc) or ProcessTask(pid, proc, stat)
    exe = read_exe(task.tid, task.proc)
    if isinstance(exe, Unreadable):
        problems.append(exe)
        exe_path, deleted = None, False
    else:
        exe_path, deleted = exe
    raw_cmdline = read_bytes(f"{task.proc}/{task.tid}/cmdline")
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
