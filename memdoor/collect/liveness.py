"""Is this pid still the process we were watching?

Checked before every cycle so a report never describes another program: the pid
must still exist, not be exiting or a zombie, run the expected executable, and (once
known) have the same start time — a new process that reused the pid and even
runs the same binary is still not the one we watched.

A process whose leader exited while other threads run is alive: it is checked
and read through one of those threads (memdoor.collect.identity.live_task).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Optional, Union

from memdoor.collect.identity import ProcessTask, live_task, read_exe, read_stat
from memdoor.collect.reading import Unreadable
from memdoor.procfs.stat import ProcStat
from memdoor.slotted import slotted


class Verdict(enum.Enum):
    SAME = "same"
    EXITED = "exited"
    EXE_MISMATCH = "exe_mismatch"
    REUSED = "pid_reused"
    UNVERIFIABLE = "unverifiable"


@slotted
@dataclass(frozen=True)
class Liveness:
    verdict: Verdict
    # The process's stat (its leader's, or as a live thread shows it; see ProcessTask).
    stat: Optional[ProcStat]
    detail: str
    # Where to read the process this tick: set exactly when the verdict is SAME.
    task: Optional[ProcessTask] = None


def exe_matches(actual: str, wanted: str) -> bool:
    """The kernel reports the resolved path; accept a wanted path that is a symlink to it."""
    return actual == wanted or actual == os.path.realpath(wanted)


def check_process(
    pid: int,
    wanted_exe: Optional[str],
    start_ticks: Optional[int],
    proc: str = "/proc",
) -> Liveness:
    return judge_process(pid, read_stat(pid, proc), wanted_exe, start_ticks, proc)


def judge_process(
    pid: int,
    stat: Union[ProcStat, Unreadable],
    wanted_exe: Optional[str],
    start_ticks: Optional[int],
    proc: str = "/proc",
) -> Liveness:
    """check_process on a stat of the leader read already (memdoor.collect.kept_process
    reads it through a descriptor kept open)."""
    if isinstance(stat, Unreadable):
        if stat.reason == "vanished":
            return Liveness(Verdict.EXITED, None, f"pid {pid} no longer exists")
        return Liveness(Verdict.UNVERIFIABLE, None, f"{stat.what}: {stat.reason} ({stat.detail})")
    task = live_task(pid, stat, proc)
    if task is None:
        return Liveness(Verdict.EXITED, stat, f"pid {pid} has exited ({stat.exit_stage})")
    stat = task.stat
    if start_ticks is not None and stat.start_ticks != start_ticks:
        return Liveness(
            Verdict.REUSED,
            stat,
            f"pid {pid} was reused: started at tick {stat.start_ticks},"
            f" the watched one at {start_ticks}",
        )
    if wanted_exe is not None:
        exe = read_exe(pid, proc)
        if isinstance(exe, Unreadable):
            if exe.reason == "vanished":
                return Liveness(Verdict.EXITED, stat, f"pid {pid} exited")
            return Liveness(Verdict.UNVERIFIABLE, stat, f"{exe.what}: {exe.reason} ({exe.detail})")
        if not exe_matches(exe[0], wanted_exe):
            return Liveness(
                Verdict.EXE_MISMATCH, stat, f"pid {pid} runs {exe[0]}, not {wanted_exe}"
            )
    return Liveness(Verdict.SAME, stat, "", task)
