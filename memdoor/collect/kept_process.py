"""The files every tick reads of one watched process, kept open while it is watched.

Each tick asks whether the process is still the one adopted (stat) and how
large it is (statm). Read through descriptors kept open (memdoor.collect.kept)
that costs two system calls instead of eight, and the stat descriptor is itself
the check that the pid was not reused: it fails with ESRCH once the process it
was opened for is gone. Then the path is read once more, as before, so the
verdict still tells an exit from a reuse. A process at rest, whose stat reads
the very line of the tick before (its resident count among the fields), costs
one: its verdict and RSS are the last tick's.

While the leader runs, the tick reads the leader's own files; once it exited
and a thread carries the process (memdoor.collect.identity.live_task), they are
read by path through that thread, as they always were.
"""

from __future__ import annotations

from typing import Optional, Union

from memdoor.collect.identity import ProcessTask
from memdoor.collect.kept import KeptFile
from memdoor.collect.liveness import Liveness, Verdict, check_process, judge_process
from memdoor.collect.memory import PAGE_KB, read_rss_kb
from memdoor.collect.reading import Unreadable, parse_bytes
from memdoor.procfs.stat import parse_stat
from memdoor.procfs.statm import parse_statm_resident_pages

# Fields after comm that decide a verdict, as indices of stat(5) fields minus 3: state,
# flags, starttime, startcode, endcode, startstack, signal. A new program (execve) maps a
# new address space, so startcode, endcode and startstack change with it.
_VERDICT_FIELDS = (0, 6, 19, 23, 24, 25, 28)
_SPLIT = _VERDICT_FIELDS[-1] + 1


class KeptProcess:
    """A thousand targets keep one each: what it remembers lies in fields of its own,
    not in tuples of them, and both files share their directory's text."""

    __slots__ = (
        "_at_rest",
        "_rss_kb",
        "_rss_stat",
        "_same",
        "_same_exe",
        "_same_key",
        "_same_stat",
        "_same_ticks",
        "_stat",
        "_statm",
        "_statm_data",
        "pid",
        "proc",
    )

    def __init__(self, pid: int, proc: str = "/proc") -> None:
        self.pid = pid
        self.proc = proc
        directory = f"{proc}/{pid}/"
        self._stat = KeptFile(directory, "stat")
        self._statm = KeptFile(directory, "statm")
        # The last SAME verdict of a running leader, what it was asked (the exe wanted,
        # the start time) and the stat fields it rested on (_verdict_key); the stat it
        # was last found in (a process at rest reads the same line again).
        self._same: Optional[Liveness] = None
        self._same_exe: Optional[str] = None
        self._same_ticks: Optional[int] = None
        self._same_key = b""
        self._same_stat = b""
        # The last statm read through the kept descriptor, its resident kB (None until
        # one was) and the stat line (the very object) the tick that read it found.
        self._statm_data = b""
        self._rss_kb: Optional[int] = None
        self._rss_stat = b""
        # Whether the last check() read the very stat line of the one before.
        self._at_rest = False

    def check(self, wanted_exe: Optional[str], start_ticks: Optional[int]) -> Liveness:
        """check_process, through the kept stat.

        While the descriptor reads the process, nothing but the fields in
        _VERDICT_FIELDS and comm can change the verdict: when none moved since the
        last tick said SAME, that verdict stands without parsing stat or reading exe
        (nor, when the whole line is as it was, finding those fields in it).
        """
        bound = self._stat.opened
        data = self._stat.read()
        same = self._same
        asked_the_same = (
            same is not None and self._same_exe == wanted_exe and self._same_ticks == start_ticks
        )
        self._at_rest = asked_the_same and data == self._same_stat
        if same is not None and self._at_rest:
            return same
        if isinstance(data, Unreadable):
            self._forget()
            if data.reason != "vanished":
                return judge_process(self.pid, data, wanted_exe, start_ticks, self.proc)
            self.close()
            liveness = check_process(self.pid, wanted_exe, start_ticks, self.proc)
            if bound and liveness.verdict is Verdict.SAME:
                # The descriptor's process is gone for certain: the one at the pid now
                # started in the same clock tick, which start times cannot tell apart.
                detail = f"pid {self.pid} was reused by a process started in the same tick"
                return Liveness(Verdict.REUSED, liveness.stat, detail)
            return liveness
        key = _verdict_key(data)
        if same is not None and asked_the_same and self._same_key == key:
            self._same_stat = data
            return same
        stat = parse_bytes(self._stat.path, data, parse_stat)
        liveness = judge_process(self.pid, stat, wanted_exe, start_ticks, self.proc)
        task = liveness.task
        if task is not None and task.tid == self.pid and key:
            self._same, self._same_exe, self._same_ticks = liveness, wanted_exe, start_ticks
            self._same_key, self._same_stat = key, data
        else:
            self._forget()
        return liveness

    def _forget(self) -> None:
        """No SAME verdict stands for the next tick: let go of what it rested on."""
        self._same = None
        self._same_key = self._same_stat = b""

    def rss_kb(self, task: ProcessTask) -> Union[int, Unreadable]:
        """read_rss_kb where check() found the process.

        stat carries the same resident count as statm (rss, field 24, both the
        mm's counters): when check() read the very stat line of the tick before,
        the RSS read under that line is the one, and statm is not read again.
        """
        if task.tid != self.pid or task.proc != self.proc:
            return read_rss_kb(task.tid, task.proc)
        kb = self._rss_kb
        if self._at_rest and kb is not None and self._rss_stat is self._same_stat:
            return kb
        data = self._statm.read()
        if kb is not None and data == self._statm_data:
            self._rss_stat = self._same_stat
            return kb
        if isinstance(data, Unreadable):
            return data
        pages = parse_bytes(self._statm.path, data, parse_statm_resident_pages)
        if isinstance(pages, Unreadable):
            return pages
        kb = pages * PAGE_KB
        self._statm_data, self._rss_kb, self._rss_stat = data, kb, self._same_stat
        return kb

    def close(self) -> None:
        self._stat.close()
        self._statm.close()


def _verdict_key(data: bytes) -> bytes:
    """comm and the verdict's fields, one string (each field is one word, so the last
    seven words are theirs); empty when the line is cut short (never matches)."""
    close = data.rfind(b")")
    fields = data[close + 2 :].split(b" ", _SPLIT)
    if close < 0 or len(fields) <= _SPLIT:
        return b""
    return b" ".join([data[:close], *[fields[index] for index in _VERDICT_FIELDS]])
