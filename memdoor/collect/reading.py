"""Reading /proc and cgroup files where every failure is a value.

A watched process can exit, be replaced, or hide a file from us between any two
reads. Raising would make every caller handle the same half-dozen errnos;
instead each read returns either the data or an :class:`Unreadable` saying which
file failed and why, and the snapshot carries those markers to the user.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, Literal, NamedTuple, TypeVar, Union

from memdoor.process_text import from_os, note_escaped
from memdoor.procfs.errors import ParseError

T = TypeVar("T")

# vanished: the process or file went away; denied: no permission; malformed:
# the kernel's text did not parse; reused: the pid now belongs to another
# process; error: any other OS error, with its strerror in detail.
Reason = Literal["vanished", "denied", "malformed", "reused", "error"]

# ESRCH: the task died while the kernel was producing the file (psutil sees the
# same race); ENOENT: the /proc directory itself is gone.
_VANISHED_ERRNOS = {errno.ENOENT, errno.ESRCH}
_DENIED_ERRNOS = {errno.EACCES, errno.EPERM}


@dataclass(frozen=True)
class Unreadable:
    """A file or section that could not be read, kept so the record can say so.

    what and detail often name a path built from what a process chose (its
    cgroup's directory), so they are made valid text here, whoever built them.
    """

    what: str
    reason: Reason
    detail: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "what", from_os(self.what))
        object.__setattr__(self, "detail", from_os(self.detail))

    def to_dict(self) -> dict[str, Any]:
        return note_escaped({"what": self.what, "reason": self.reason, "detail": self.detail})


def unreadable_from_oserror(what: str, exc: OSError) -> Unreadable:
    if exc.errno in _VANISHED_ERRNOS:
        reason: Reason = "vanished"
    elif exc.errno in _DENIED_ERRNOS:
        reason = "denied"
    else:
        reason = "error"
    return Unreadable(what, reason, exc.strerror or type(exc).__name__)


def malformed(what: str, detail: str) -> Unreadable:
    return Unreadable(what, "malformed", detail)


# The first read is small because nearly every file a tick reads is under 1 KB
# and os.read allocates the whole buffer up front. Larger files (smaps of a big
# process: megabytes) come back a page or so per read whatever the size asked
# for, since seq_file stops at its own buffer: thousands of reads, so they go
# into one reused buffer instead of a fresh bytes object each (7 ms of the
# 35 ms it takes to read a 14 MB smaps, measured with benchmarks/snapshot.py).
_FIRST_READ = 64 * 1024
_LATER_READS = 256 * 1024


def read_bytes(path: str) -> Union[bytes, Unreadable]:
    """Read a whole file; /proc files are generated as they are read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return unreadable_from_oserror(path, exc)
    try:
        # A short read is not the end: seq_file hands out whole records per read.
        first = os.read(fd, _FIRST_READ)
        second = os.read(fd, _FIRST_READ) if first else b""
        if not second:
            return first
        data = bytearray(first)
        data += second
        buffer = bytearray(_LATER_READS)
        view = memoryview(buffer)
        with open(fd, "rb", buffering=0, closefd=False) as stream:
            while count := stream.readinto(buffer):
                data += view[:count]
        return bytes(data)
    except OSError as exc:
        return unreadable_from_oserror(path, exc)
    finally:
        os.close(fd)


def read_text(path: str) -> Union[str, Unreadable]:
    data = read_bytes(path)
    if isinstance(data, Unreadable):
        return data
    return data.decode("utf-8", "surrogateescape")


def read_link(path: str) -> Union[str, Unreadable]:
    """A symlink's target (an executable, a file a process opened) as memdoor.process_text
    writes any name a process chose."""
    try:
        return from_os(os.readlink(path))
    except OSError as exc:
        return unreadable_from_oserror(path, exc)


class Links(NamedTuple):
    """The symlinks of a directory that could be read, and why the others could not."""

    targets: list[str]
    failures: list[Unreadable]


def read_links(directory: str, names: Iterable[str]) -> Union[Links, Unreadable]:
    """The targets of the named symlinks in directory, each read relative to one
    descriptor of it.

    For /proc/PID/fd with thousands of entries: a readlink through the whole
    path walks /proc and the pid's directory again for every fd, measured at
    twice the kernel time. A target is the kernel's text, not yet made valid
    text (memdoor.process_text.from_os does that for what is kept); a link
    gone since the directory was listed is a failure that says vanished.
    """
    try:
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return unreadable_from_oserror(directory, exc)
    readlink = os.readlink
    links = Links([], [])
    try:
        for name in names:
            try:
                links.targets.append(readlink(name, dir_fd=descriptor))
            except OSError as exc:
                links.failures.append(unreadable_from_oserror(f"{directory}/{name}", exc))
    finally:
        os.close(descriptor)
    return links


def list_dir(path: str) -> Union[list[str], Unreadable]:
    try:
        return os.listdir(path)
    except OSError as exc:
        return unreadable_from_oserror(path, exc)


def read_parsed(path: str, parse: Callable[[str], T]) -> Union[T, Unreadable]:
    """Read a text file and parse it; a ParseError becomes a "malformed" Unreadable."""
    data = read_bytes(path)
    return data if isinstance(data, Unreadable) else parse_bytes(path, data, parse)


def parse_bytes(path: str, data: bytes, parse: Callable[[str], T]) -> Union[T, Unreadable]:
    """Parse what was read of path as read_parsed does (for a file read some other way)."""
    try:
        return parse(data.decode("utf-8", "surrogateescape"))
    except ParseError as exc:
        return malformed(path, str(exc))
