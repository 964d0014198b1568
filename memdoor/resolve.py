"""Turn a target's locator (pid, pidfile, exe) into the pids to watch right now.

Resolution runs again on every interval while a target has no live process, so
a service that restarts (new pid in its pidfile, new process of its exe) is
picked up again without restarting memdoor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from memdoor.collect.identity import read_exe
from memdoor.collect.reading import Unreadable, malformed, read_text
from memdoor.vocabulary import decimal


@dataclass(frozen=True)
class Resolution:
    pids: list[int] = field(default_factory=list)
    problem: Optional[Unreadable] = None


def read_pidfile(path: str, proc: str = "/proc") -> Resolution:
    text = read_text(path)
    if isinstance(text, Unreadable):
        return Resolution(problem=text)
    pid = decimal(text.strip().split("\n", 1)[0].strip())
    if pid is None or pid < 1:
        return Resolution(problem=malformed(path, f"expected a pid, got {text[:40]!r}"))
    return Resolution(pids=[pid] if os.path.exists(f"{proc}/{pid}") else [])


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
    pid: Optional[int], pidfile: Optional[str], exe: Optional[str], proc: str = "/proc"
) -> Resolution:
    if pid is not None:
        return Resolution(pids=[pid] if os.path.exists(f"{proc}/{pid}") else [])
    if pidfile is not None:
        return read_pidfile(pidfile, proc)
    if exe is not None:
        return processes_running(exe, proc)
    raise ValueError("a target needs a pid, a pidfile or an exe")
