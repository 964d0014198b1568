"""Parse /proc/PID/stat for the parent pid, whether the task is dying, and the start time
that identifies a process.

A pid alone does not identify a process: pids are reused. The pair (pid,
starttime) does, because starttime (clock ticks since boot) cannot repeat for
the same pid without the clock going backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from memdoor.process_text import from_os
from memdoor.procfs.errors import ParseError
from memdoor.slotted import slotted

# include/linux/sched.h: set by do_exit() before it frees the task's memory.
PF_EXITING = 0x00000004
_SIGKILL_BIT = 1 << (9 - 1)


@slotted
@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    start_ticks: int
    flags: int
    pending_signals: int

    @property
    def exiting(self) -> bool:
        """In do_exit() but not yet a zombie, which lasts a while for a large process.

        Freeing the memory of a process that held gigabytes takes hundreds of
        milliseconds, longer while the OOM reaper competes for it. Meanwhile the
        state letter still says R or D, RSS falls, and on cgroup v1 the kernel
        already shows the task in the root cgroup (proc_cgroup_show), so a
        snapshot taken then is a half-freed process in the wrong cgroup.
        """
        return bool(self.flags & PF_EXITING)

    @property
    def kill_pending(self) -> bool:
        """SIGKILL sent but not yet acted on: the task is still intact, but doomed.

        The OOM killer sends SIGKILL before it logs the kill, and the signal sits
        in every thread's pending set until the victim runs into do_exit(),
        which can take long for a task frozen or in uninterruptible sleep.
        """
        return bool(self.pending_signals & _SIGKILL_BIT)

    @property
    def exited(self) -> bool:
        """Zombie (Z), dead (X) or exiting: the task is gone though its pid still answers."""
        return self.state in ("Z", "X") or self.exiting

    @property
    def exit_stage(self) -> str:
        """How far an exited task has got, for the records that say it is gone."""
        return "exiting" if self.state not in ("Z", "X") else "zombie"


# Field positions counted after the closing parenthesis of comm: state is
# field 3 of stat(5), so index 0 here; ppid is 4 -> 1; flags is 9 -> 6;
# starttime is 22 -> 19; signal (the pending set, shown to every reader) is
# 31 -> 28. Every kernel since 2.6 prints at least 44 fields.
_STATE, _PPID, _FLAGS, _STARTTIME, _SIGNAL = 0, 1, 6, 19, 28


def parse_stat(text: str) -> ProcStat:
    """Split on the last ')' because comm may itself contain ')' and spaces.

    comm is whatever bytes the process set (prctl PR_SET_NAME), so it is decoded
    by memdoor.process_text; text is this file read with surrogateescape.
    """
    open_paren = text.find("(")
    close_paren = text.rfind(")")
    if open_paren < 1 or close_paren < open_paren:
        raise ParseError(f"stat: no '(comm)' in {text[:80]!r}")
    rest = text[close_paren + 1 :].split()
    # The field after the last one read must be there too: a read cut inside
    # a number would otherwise pass for a smaller, wrong one.
    if len(rest) <= _SIGNAL + 1:
        raise ParseError(f"stat: {len(rest) + 2} fields, need at least {_SIGNAL + 4}")
    pid_text = text[:open_paren].strip()
    try:
        return ProcStat(
            pid=int(pid_text),
            comm=from_os(text[open_paren + 1 : close_paren]),
            state=rest[_STATE],
            ppid=int(rest[_PPID]),
            start_ticks=int(rest[_STARTTIME]),
            flags=int(rest[_FLAGS]),
            pending_signals=int(rest[_SIGNAL]),
        )
    except ValueError as exc:
        raise ParseError(f"stat: {exc}") from exc
