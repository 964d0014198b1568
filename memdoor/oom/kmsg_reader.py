"""Follow the kernel log through /dev/kmsg, where the OOM killer names its victims.

/dev/kmsg hands out one record per read() and keeps a read position per open
file, so a daemon can wait on the descriptor in its event loop and drain what
arrived without ever blocking. Parsing is in memdoor.procfs.kmsg.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import NamedTuple, Optional, Union

from memdoor.collect.reading import Unreadable, malformed, unreadable_from_oserror
from memdoor.procfs.errors import ParseError
from memdoor.procfs.kmsg import KmsgRecord, parse_kmsg_record

# read() fails with EINVAL rather than truncating when the buffer is smaller than
# the record. Records are at most 2 KiB on 6.x and 8 KiB on older kernels.
_READ_SIZE = 16384


class KmsgLosses(NamedTuple):
    """Kernel log records lost since the last look: a kill among them has no report."""

    overwritten: int
    unparsable: int
    detail: str


class KmsgReader:
    """A non-blocking reader of new kernel log records.

    Counters rather than exceptions report trouble, because the reader lives for
    the daemon's lifetime: overwritten counts the times the kernel's ring buffer
    wrapped past records before we read them (an OOM report may be among the
    lost ones), unparsable the records that did not parse, and last_problem
    keeps the latest of either kind or of an unexpected read error. take_losses
    hands the counts over for a record and starts counting again.
    """

    def __init__(self, fd: int, path: str) -> None:
        self._fd = fd
        self.path = path
        self.overwritten = 0
        self.unparsable = 0
        self.last_problem: Optional[Unreadable] = None

    @classmethod
    def open(cls, path: str = "/dev/kmsg") -> Union[KmsgReader, Unreadable]:
        """Open positioned after the newest record: only kills from now on matter.

        Opening fails with ENOENT inside containers that do not provide
        /dev/kmsg, and with EPERM when kernel.dmesg_restrict is 1 and the
        caller lacks CAP_SYSLOG; both come back as Unreadable.
        """
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            return unreadable_from_oserror(path, exc)
        try:
            os.lseek(fd, 0, os.SEEK_END)
        except OSError as exc:
            os.close(fd)
            return unreadable_from_oserror(path, exc)
        return cls(fd, path)

    def fileno(self) -> int:
        return self._fd

    def read_available(self) -> list[KmsgRecord]:
        """Every record that arrived since the last call, without blocking.

        EAGAIN means nothing more is there. EPIPE means records were
        overwritten before we read them; the kernel has moved our position to
        the oldest record still held, so reading simply continues.
        """
        records = []
        while True:
            try:
                data = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                break
            except BrokenPipeError:
                self.overwritten += 1
                self.last_problem = Unreadable(self.path, "error", "records were overwritten")
                continue
            except OSError as exc:
                self.last_problem = unreadable_from_oserror(self.path, exc)
                break
            if not data:
                break
            try:
                records.append(parse_kmsg_record(data.decode("utf-8", "surrogateescape")))
            except ParseError as exc:
                self.unparsable += 1
                self.last_problem = malformed(self.path, str(exc))
        return records

    def take_losses(self) -> Optional[KmsgLosses]:
        """What was lost since the last call, or None when nothing was."""
        if not (self.overwritten or self.unparsable):
            return None
        detail = self.last_problem.detail if self.last_problem else ""
        losses = KmsgLosses(self.overwritten, self.unparsable, detail)
        self.overwritten = self.unparsable = 0
        return losses

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> KmsgReader:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self.close()
