"""Turn a target's locator (pid, pidfile, exe) into the pids to watch right now.

Resolution runs again on every interval while a target has no live process, so
a service that restarts (new pid in its pidfile, new process of its exe) is
picked up again without restarting memdoor.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from memdoor.collect.identity import read_exe, read_stat
from memdoor.collect.memory import read_status
from memdoor.collect.owner import owner_path
from memdoor.collect.reading import Unreadable, malformed, read_bytes, read_parsed
from memdoor.pidfile import read_pid, trust_of, user_words
from memdoor.procfs.cgroup import parse_proc_cgroup
from memdoor.procfs.cgroup_owner import parse_cgroup_owner
from memdoor.procfs.cmdline import parse_cmdline
from memdoor.vocabulary import decimal

# How much of a command line an exe target's cmdline pattern is matched against: the
# command line is the process's to choose, and a pattern that backtracks must not be
# handed megabytes of it.
CMDLINE_MATCHED_CHARS = 4096
# Longer than any ancestry a process has; a bound for a chain that keeps changing
# while it is walked.
_MAX_ANCESTORS = 4096


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


@dataclass(frozen=True)
class ExeNarrowing:
    """What an exe target asks of a process besides its executable
    (docs/configuration.md): a command line matching cmdline, the systemd unit named unit,
    a cgroup at or below cgroup. None asks nothing."""

    cmdline: Optional[str] = None
    unit: Optional[str] = None
    cgroup: Optional[str] = None


EVERY_PROCESS = ExeNarrowing()


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    """Each target's pattern compiled once, not once per process per scan; the config
    check compiled it already, so it is valid."""
    return re.compile(pattern)


def _cmdline_matches(pid: int, pattern: str, proc: str) -> bool:
    data = read_bytes(f"{proc}/{pid}/cmdline")
    if isinstance(data, Unreadable):
        return False
    joined = " ".join(parse_cmdline(data))[:CMDLINE_MATCHED_CHARS]
    return _compiled(pattern).search(joined) is not None


def _cgroup_matches(pid: int, narrowing: ExeNarrowing, proc: str) -> bool:
    entries = read_parsed(f"{proc}/{pid}/cgroup", parse_proc_cgroup)
    if isinstance(entries, Unreadable):
        return False
    path = owner_path(entries) or "/"
    if narrowing.unit is not None:
        owner = parse_cgroup_owner(path)
        if narrowing.unit not in (owner.unit, owner.user_unit):
            return False
    prefix = narrowing.cgroup
    return prefix is None or prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _narrowed(pid: int, narrowing: ExeNarrowing, proc: str) -> bool:
    """Whether the process also has what narrowing asks; unreadable counts as no."""
    if narrowing.cmdline is not None and not _cmdline_matches(pid, narrowing.cmdline, proc):
        return False
    if narrowing.unit is None and narrowing.cgroup is None:
        return True
    return _cgroup_matches(pid, narrowing, proc)


def _descends_from(pid: int, ancestor: int, proc: str) -> bool:
    """Whether pid is ancestor or one of its descendants, walking parents up to PID 1."""
    seen: set[int] = set()
    while pid not in seen and len(seen) < _MAX_ANCESTORS:
        if pid == ancestor:
            return True
        seen.add(pid)
        stat = read_stat(pid, proc)
        if isinstance(stat, Unreadable) or stat.ppid <= 0:
            return False
        pid = stat.ppid
    return False


def processes_running(
    exe: str,
    proc: str = "/proc",
    narrowing: ExeNarrowing = EVERY_PROCESS,
    own_pid: Optional[int] = None,
) -> Resolution:
    """Every process whose /proc/PID/exe is exe and that narrowing also selects, never
    memdoor itself (own_pid, this process by default) nor a process it started.

    Processes whose exe link we may not read (other users without
    CAP_SYS_PTRACE) or that exit during the scan are skipped: they cannot be
    confirmed as the target, and reporting a stranger is worse than missing one.
    memdoor is skipped because an exe target for the interpreter it runs under
    (python3) would otherwise watch the watcher, and the demo's children with it.
    """
    own = os.getpid() if own_pid is None else own_pid
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
        if found[0] not in wanted or _descends_from(pid, own, proc):
            continue
        if _narrowed(pid, narrowing, proc):
            pids.append(pid)
    return Resolution(pids=sorted(pids))


def resolve(
    pid: Optional[int],
    pidfile: Optional[str],
    exe: Optional[str],
    proc: str = "/proc",
    pidfile_owner: Optional[str] = None,
    narrowing: ExeNarrowing = EVERY_PROCESS,
) -> Resolution:
    """Blocking file system reads: the supervisor calls this in a thread of its own."""
    if pid is not None:
        return Resolution(pids=[pid] if os.path.exists(f"{proc}/{pid}") else [])
    if pidfile is not None:
        return read_pidfile(pidfile, proc, pidfile_owner)
    if exe is not None:
        return processes_running(exe, proc, narrowing)
    raise ValueError("a target needs a pid, a pidfile or an exe")
