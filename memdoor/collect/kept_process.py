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
# What a SAME verdict was asked (the exe wanted, the start time) and the fields it rested on.
_SameKey = tuple[Optional[str], Optional[int], bytes]


class KeptProcess:
    __slots__ = ("_at_rest", "_rss", "_same", "_same_stat", "_stat", "_statm", "pid", "proc")

    def __init__(self, pid: int, proc: str = "/proc") -> None:
        self.pid = pid
        self.proc = proc
        self._stat = KeptFile(f"{proc}/{pid}/stat")
        self._statm = KeptFile(f"{proc}/{pid}/statm")
        # The last SAME verdict of a running leader, and the stat fields it rested on;
        # the stat it was last found in (a process at rest reads the same line again).
        self._same: Optional[tuple[_SameKey, Liveness]] = None
        self._same_stat = b""
        # The last statm read through the kept descriptor, its resident kB and the
        # stat line (the very object) the tick that read it found.
        self._rss: Optional[tuple[bytes, int, bytes]] = None
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
        self._at_rest = (
            same is not None
            and data == self._same_stat
            and same[0][0] == wanted_exe
            and same[0][1] == start_ticks
        )
        if same is not None and self._at_rest:
            return same[1]
        if isinstance(data, Unreadable):
            self._same = None
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
        key = (wanted_exe, start_ticks, _verdict_key(data))
        if same is not None and same[0] == key:
            self._same_stat = data
            return same[1]
        stat = parse_bytes(self._stat.path, data, parse_stat)
        liveness = judge_process(self.pid, stat, wanted_exe, start_ticks, self.proc)
        task = liveness.task
        leader_runs = task is not None and task.tid == self.pid
        self._same = (key, liveness) if leader_runs and key[2] else None
        self._same_stat = data if self._same is not None else b""
        return liveness

    def rss_kb(self, task: ProcessTask) -> Union[int, Unreadable]:
        """read_rss_kb where check() found the process.

        stat carries the same resident count as statm (rss, field 24, both the
        mm's counters): when check() read the very stat line of the tick before,
        the RSS read under that line is the one, and statm is not read again.
        """
        if task.tid != self.pid or task.proc != self.proc:
            return read_rss_kb(task.tid, task.proc)
        rss = self._rss
        if self._at_rest and rss is not None and rss[2] is self._same_stat:
            return rss[1]
        data = self._statm.read()
        if rss is not None and data == rss[0]:
            self._rss = (rss[0], rss[1], self._same_stat)
            return rss[1]
        if isinstance(data, Unreadable):
            return data
        pages = parse_bytes(self._statm.path, data, parse_statm_resident_pages)
        if isinstance(pages, Unreadable):
            return pages
        self._rss = (data, pages * PAGE_KB, self._same_stat)
        return pages * PAGE_KB

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
