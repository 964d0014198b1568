"""Small files a tick reads again and again, opened once and re-read with pread.

Opening, reading to the end and closing /proc/PID/stat costs four system calls
and about 12 µs; a pread on a descriptor kept open costs one and about 3 µs,
which at a thousand targets is most of a tick. A descriptor on a file under
/proc/PID stays bound to the process it was opened for: once that process is
gone its reads fail with ESRCH, even after the pid went to another process, so
a kept stat cannot describe a stranger. A cgroup file read this way follows
its cgroup until the cgroup is removed (ENODEV).

A kept file is an optimisation, never a requirement: where no descriptor can
be had (the open-files limit reached), the file is read by its path as before.
"""

from __future__ import annotations

import errno
import os
import resource
from typing import Optional, Union

from memdoor.collect.reading import Unreadable, read_bytes, unreadable_from_oserror

# Every file kept this way (stat, statm, a cgroup's usage) is far smaller; a
# read that fills the buffer is read again by path rather than taken as whole.
_READ_SIZE = 4096
_OUT_OF_DESCRIPTORS = {errno.EMFILE, errno.ENFILE}


def allow_more_open_files() -> bool:
    """Raise the soft open-files limit to the hard one; whether it rose.

    A daemon watching a thousand targets keeps several descriptors per target,
    and the soft limit a shell or service manager hands out is often 1,024.
    """
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == hard:
            return False
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        return False
    return True


class KeptFile:
    """One file re-read from its start on every call; close() when done with it.

    The file is path, or name in the directory path ends with: the files of one
    process share their directory's text (a thousand targets keep two each).
    """

    __slots__ = ("_fd", "_name", "_where")

    def __init__(self, path: str, name: str = "") -> None:
        self._where = path
        self._name = name
        self._fd: Optional[int] = None

    @property
    def path(self) -> str:
        return self._where + self._name

    def read(self) -> Union[bytes, Unreadable]:
        fd = self._fd
        if fd is None:
            opened = self._open()
            if isinstance(opened, Unreadable):
                return opened
            if opened is None:
                return read_bytes(self.path)
            fd = opened
        try:
            data = os.pread(fd, _READ_SIZE, 0)
        except OSError as exc:
            # Gone for good (ESRCH, ENODEV): the descriptor will never read again.
            self.close()
            return unreadable_from_oserror(self.path, exc)
        return data if len(data) < _READ_SIZE else read_bytes(self.path)

    def _open(self) -> Union[int, Unreadable, None]:
        """The descriptor, why the file cannot be opened, or None: no descriptor to spare."""
        for attempt in range(2):
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                return self._fd
            except OSError as exc:
                if exc.errno not in _OUT_OF_DESCRIPTORS:
                    return unreadable_from_oserror(self.path, exc)
                if attempt or not allow_more_open_files():
                    return None
        return None

    @property
    def opened(self) -> bool:
        """Whether a descriptor is held: a read that fails then failed on it."""
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
