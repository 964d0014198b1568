"""Turn a target's locator (pid, pidfile, exe) into the pids to watch right now.

Resolution runs again on every interval while a target has no live process, so
a service that restarts (new pid in its pidfile, new process of its exe) is
picked up again without restarting memdoor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from memdoor.collect.identity import read_exe, read_stat
from memdoor.collect.memory import read_status
from memdoor.collect.reading import Unreadable, malformed
from memdoor.pidfile import read_pid, trust_of, user_words
from memdoor.vocabulary import decimal


@dataclass(frozen=True)
class Resolution:
    pids: list[int] = field(default_factory=list)
    problem: Optional[Unreadable] = None
    # The start time of each pid whose owner was checked: the supervisor adopts the
    # process that was checked, not one that took its pid since.
    start_ticks: dict[int, int] = field(default_factory=dict)


def read_pidfile(path: str, proc: str = "/proc", owner: Optional[str] = None) -> Resolution:
    """The live process a pidfile names, if memdoor may believe the file (memdoor.pidfile).

    With an owner (the target's pidfile_owner) only a process whose real uid is that
    user's is named, whoever owns the file: trusting the user's file must not let the
    user point memdoor at another user's process.
    """
    trust = trust_of(owner)
    if isinstance(trust, str):
        return Resolution(problem=Unreadable(path, "error", trust))
    pid = read_pid(path, trust)
    if isinstance(pid, Unreadable):
        return Resolution(problem=pid)
    if trust.owner_uid is None:
        return Resolution(pids=[pid] if os.path.exists(f"{proc}/{pid}") else [])
    return _process_of_owner(pid, path, trust.owner_uid, proc)


def _process_of_owner(pid: int, path: str, owner_uid: int, proc: str) -> Resolution:
    """pid if its real uid is the owner's; the uid is read between two reads of the
    start time, so it is the uid of the process with that start time."""
    before = read_stat(pid, proc)
    status = read_status(pid, proc)
    after = read_stat(pid, proc)
    if isinstance(before, Unreadable) or isinstance(after, Unreadable):
        return Resolution()  # not running (any more): nothing to adopt yet
    if before.start_ticks != after.start_ticks:
        return Resolution()  # replaced while read: looked at again next interval
    if isinstance(status, Unreadable):
        return Resolution(problem=status)
    if status.uid is None:
        return Resolution(problem=malformed(f"{proc}/{pid}/status", "no Uid line"))
    if status.uid != owner_uid:
        detail = (
            f"it names pid {pid}, a process of {user_words(status.uid)}: with pidfile_owner "
            f"only processes of {user_words(owner_uid)} are adopted"
        )
        return Resolution(problem=Unreadable(path, "denied", detail))
    return Resolution(pids=[pid], start_ticks={pid: before.start_ticks})


def processes_running(exe: str, proc: str = "/proc") -> Resolution:
    """Every process whose /proc/PID/exe is exe.

    Processes whose exe link we may not read (other users without
    CAP_SYS_PTRACE) or that exit during the scan are skipped: they cannot be
    confirmed as the target, and reporting a stranger is worse than missing one.
    """
    try:
        entries = os.listdir(proc)
    except OSError as exc:
        return Resolution(problem=Unreadable(proc, "error", exc.strerror or str(exc)))
    # The kernel reports the resolved path; resolve the wanted one once per scan,
    # not once per process (exe_matches would, for every process on the host).
    wanted = (exe, os.path.realpath(exe))
    pids = []
    for entry in entries:
        pid = decimal(entry)
        if pid is None:
            continue
        found = read_exe(pid, proc)
        if isinstance(found, Unreadable):
            continue
        if found[0] in wanted:
            pids.append(pid)
    return Resolution(pids=sorted(pids))


def resolve(
    pid: Optional[int],
    pidfile: Optional[str],
    exe: Optional[str],
    proc: str = "/proc",
    pidfile_owner: Optional[str] = None,
) -> Resolution:
    """Blocking file system reads: the supervisor calls this in a thread of its own."""
    if pid is not None:
        return Resolution(pids=[pid] if os.path.exists(f"{proc}/{pid}") else [])
    if pidfile is not None:
        return read_pidfile(pidfile, proc, pidfile_owner)
    if exe is not None:
        return processes_running(exe, proc)
    raise ValueError("a target needs a pid, a pidfile or an exe")
