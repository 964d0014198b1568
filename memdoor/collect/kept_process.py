"""The files every tick reads of one watched process, kept open while it is watched.

Each tick asks whether the process is still the one adopted (stat) and how
large it is (statm). Read through descriptors kept open (memdoor.collect.kept)
that costs two system calls instead of eight, and the stat descriptor is itself
the check that the pid was not reused: it fails with ESRCH once the process it
was opened for is gone. Then the path is read once more, as before, so the
verdict still tells an exit from a reuse.

While the leader runs, the tick reads the leader's own files; once it exited
and a thread carries the process (memdoor.collect.identity.live_task), they are
read by path through that thread, as they always were.
"""

from __future__ import annotations

from typing import Optional, Union

from memdoor.collect.identity import ProcessTask
from memdoor.collect.kept import KeptFile
from memdoor.collect.liveness import Liveness, check_process, judge_process
from memdoor.collect.memory import PAGE_KB, read_rss_kb
from memdoor.collect.reading import Unreadable, parse_bytes
from memdoor.procfs.stat import parse_stat
from memdoor.procfs.statm import parse_statm_resident_pages


class KeptProcess:
    __slots__ = ("_stat", "_statm", "pid", "proc")

    def __init__(self, pid: int, proc: str = "/proc") -> None:
        self.pid = pid
        self.proc = proc
        self._stat = KeptFile(f"{proc}/{pid}/stat")
        self._statm = KeptFile(f"{proc}/{pid}/statm")

    def check(self, wanted_exe: Optional[str], start_ticks: Optional[int]) -> Liveness:
        """check_process, through the kept stat."""
        data = self._stat.read()
        if isinstance(data, Unreadable):
            if data.reason == "vanished":
                self.close()
                return check_process(self.pid, wanted_exe, start_ticks, self.proc)
            return judge_process(self.pid, data, wanted_exe, start_ticks, self.proc)
        stat = parse_bytes(self._stat.path, data, parse_stat)
        return judge_process(self.pid, stat, wanted_exe, start_ticks, self.proc)

    def rss_kb(self, task: ProcessTask) -> Union[int, Unreadable]:
        """read_rss_kb where check() found the process."""
        if task.tid != self.pid or task.proc != self.proc:
            return read_rss_kb(task.tid, task.proc)
        data = self._statm.read()
        if isinstance(data, Unreadable):
            return data
        pages = parse_bytes(self._statm.path, data, parse_statm_resident_pages)
        return pages if isinstance(pages, Unreadable) else pages * PAGE_KB

    def close(self) -> None:
        self._stat.close()
        self._statm.close()
