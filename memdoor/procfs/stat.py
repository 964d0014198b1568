"""Parse /proc/PID/stat for the parent pid and the start time that identifies a process.

A pid alone does not identify a process: pids are reused. The pair (pid,
starttime) does, because starttime (clock ticks since boot) cannot repeat for
the same pid without the clock going backwards.
"""

from __future__ import annotations

from dataclasses import dataclass

from memdoor.procfs.errors import ParseError


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    start_ticks: int

    @property
    def exited(self) -> bool:
        """Zombie (Z) or dead (X): the task is gone though its pid still answers."""
        return self.state in ("Z", "X")


# Field positions counted after the closing parenthesis of comm: state is
# field 3 of stat(5), so index 0 here; ppid is 4 -> 1; starttime is 22 -> 19.
_STATE, _PPID, _STARTTIME = 0, 1, 19


def parse_stat(text: str) -> ProcStat:
    """Split on the last ')' because comm may itself contain ')' and spaces."""
    open_paren = text.find("(")
    close_paren = text.rfind(")")
    if open_paren < 1 or close_paren < open_paren:
        raise ParseError(f"stat: no '(comm)' in {text[:80]!r}")
    rest = text[close_paren + 1 :].split()
    # The field after starttime (vsize) must be there too: a read cut inside
    # starttime would otherwise pass for a smaller, wrong start time.
    if len(rest) <= _STARTTIME + 1:
        raise ParseError(f"stat: {len(rest) + 2} fields, need at least {_STARTTIME + 4}")
    pid_text = text[:open_paren].strip()
    try:
        return ProcStat(
            pid=int(pid_text),
            comm=text[open_paren + 1 : close_paren],
            state=rest[_STATE],
            ppid=int(rest[_PPID]),
            start_ticks=int(rest[_STARTTIME]),
        )
    except ValueError as exc:
        raise ParseError(f"stat: {exc}") from exc
