"""A pidfile, read only when nobody but root (or the one user a target trusts) wrote it.

Whoever can write a target's pidfile chooses the process memdoor snapshots, and a
snapshot puts that process's command line, mapped files and sockets into a journal
others read. systemd's PIDFile= accepts a pid outside the service's cgroup only from
a root-owned file reached through directories no one else controls; memdoor has no
cgroup to check a pid against, so it applies those rules to every pidfile
(docs/configuration.md, "Pidfiles"):

- every directory on the way is owned by a trusted user and writable by nobody else:
  no group or world write bit (a POSIX ACL granting write shows in the group bits,
  and the sticky bit stops strangers from replacing a file, not from creating it
  first). Directories are opened one at a time from `/` and each one checked on the
  descriptor opened, so nothing can be swapped between the check and the use;
  symlinks among them are followed (`/var/run` is one on Debian) by walking their
  target the same way: a symlink is as trustworthy as the directory holding it;
- the pidfile is a regular file, never a symlink: a FIFO would block the open, a
  device such as /dev/zero never ends, a link could name /etc/shadow. It is opened
  O_NONBLOCK, so a FIFO or a leased file slipped in after the check cannot hold the
  reader either, and its owner and mode are checked on the opened descriptor;
- at most PIDFILE_MAX_BYTES are read, and the content is never quoted back, only its
  length: whatever the file holds must not reach the journal.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from dataclasses import dataclass
from typing import Callable, Optional, Union

from memdoor.collect.reading import Unreadable, malformed, unreadable_from_oserror
from memdoor.vocabulary import PID_MAX_LIMIT, decimal

# A pid takes at most 7 digits; room for a newline, spaces and a second line.
PIDFILE_MAX_BYTES = 64
# The kernel's MAXSYMLINKS: a path needing more is a loop.
_MAX_SYMLINKS = 40
_DIRECTORY_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PIDFILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

_NOT_REGULAR: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a directory"),
)


@dataclass(frozen=True)
class PidfileTrust:
    """Whose writes memdoor believes: root, and the target's pidfile_owner if it has one."""

    owner: Optional[str] = None
    owner_uid: Optional[int] = None

    @property
    def uids(self) -> frozenset[int]:
        return frozenset({0} if self.owner_uid is None else {0, self.owner_uid})

    def words(self) -> str:
        return "root" if self.owner_uid is None else f"root and {user_words(self.owner_uid)}"


def trust_of(owner: Optional[str]) -> Union[PidfileTrust, str]:
    """The trust a target's pidfile_owner gives, or why it gives none.

    Looked up at every read, so a user deleted and created again is followed by name
    (the config check at load refuses a name that is unknown then).
    """
    if owner is None:
        return PidfileTrust()
    try:
        return PidfileTrust(owner, pwd.getpwnam(owner).pw_uid)
    except (KeyError, ValueError):
        return f"pidfile_owner {owner!r} is not a user on this host"


def user_words(uid: int) -> str:
    """`app (uid 1000)`, or `uid 1000` for a uid no user has: what a refusal names."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group_words(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def read_pid(path: str, trust: PidfileTrust) -> Union[int, Unreadable]:
    """The pid the pidfile at path holds, or why it was refused, unreadable or not a pid."""
    directory, name = os.path.split(path)
    opened = _open_directory(directory, path, trust)
    if isinstance(opened, Unreadable):
        return opened
    try:
        data = _read_file(opened, name, path, trust)
    finally:
        os.close(opened)
    if isinstance(data, Unreadable):
        return data
    return _pid_in(data, path)


def _open_directory(directory: str, path: str, trust: PidfileTrust) -> Union[int, Unreadable]:
    """directory as an O_PATH descriptor, reached from `/` through checked directories only.

    A symlink on the way is followed by walking its target the same way, so every
    directory it leads through is checked too.
    """
    walked: list[tuple[int, str]] = []  # descriptor and path of each directory entered
    try:
        refusal = _enter(walked, os.open("/", _DIRECTORY_FLAGS), "/", path, trust)
        pending, links = _components(directory), 0
        while refusal is None and pending:
            part = pending.pop(0)
            parent, where = walked[-1]
            if part == "..":
                _leave(walked, keep=max(1, len(walked) - 1))
            elif stat.S_ISLNK(os.stat(part, dir_fd=parent, follow_symlinks=False).st_mode):
                links += 1
                if links > _MAX_SYMLINKS:
                    return Unreadable(path, "error", f"more than {_MAX_SYMLINKS} symlinks")
                target = os.readlink(part, dir_fd=parent)
                if target.startswith("/"):
                    _leave(walked, keep=1)
                pending[:0] = _components(target)
            else:
                child = os.open(part, _DIRECTORY_FLAGS, dir_fd=parent)
                refusal = _enter(walked, child, os.path.join(where, part), path, trust)
        return refusal if refusal is not None else walked.pop()[0]
    except OSError as exc:
        return unreadable_from_oserror(path, exc)
    finally:
        _leave(walked, keep=0)


def _enter(
    walked: list[tuple[int, str]], fd: int, where: str, path: str, trust: PidfileTrust
) -> Optional[Unreadable]:
    """Add the opened directory to walked; why it is not trusted, or None."""
    walked.append((fd, where))
    writers = _untrusted_writers(os.fstat(fd), trust)
    if writers is None:
        return None
    return Unreadable(
        path,
        "denied",
        f"the directory {where} is {writers}: a pidfile is read only where no user but "
        f"{trust.words()} can create or replace it",
    )


def _leave(walked: list[tuple[int, str]], keep: int) -> None:
    while len(walked) > keep:
        os.close(walked.pop()[0])


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _read_file(
    directory: int, name: str, path: str, trust: PidfileTrust
) -> Union[bytes, Unreadable]:
    """The first bytes of the pidfile `name` in the checked directory, or why not.

    Its kind is checked before the open (opening a device can have effects of its
    own), and kind, owner and mode again on the opened descriptor.
    """
    try:
        kind = _not_regular(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode)
        if kind is not None:
            return _kind_refusal(kind, path)
        fd = os.open(name, _PIDFILE_FLAGS, dir_fd=directory)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a symlink since the check
            return _kind_refusal("a symlink", path)
        return unreadable_from_oserror(path, exc)
    try:
        opened = os.fstat(fd)
        kind = _not_regular(opened.st_mode)
        if kind is not None:
            return _kind_refusal(kind, path)
        writers = _untrusted_writers(opened, trust)
        if writers is not None:
            return Unreadable(
                path,
                "denied",
                f"the pidfile is {writers}: only a pidfile that no user but "
                f"{trust.words()} can write is read",
            )
        return _read_at_most(fd, PIDFILE_MAX_BYTES + 1)
    except OSError as exc:
        return unreadable_from_oserror(path, exc)
    finally:
        os.close(fd)


def _read_at_most(fd: int, limit: int) -> bytes:
    data = b""
    while len(data) < limit:
        chunk = os.read(fd, limit - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _not_regular(mode: int) -> Optional[str]:
    for test, kind in _NOT_REGULAR:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "a file of an unknown kind"


def _kind_refusal(kind: str, path: str) -> Unreadable:
    return Unreadable(
        path,
        "denied",
        f"{kind}, not a regular file: a pidfile is read only from a regular file, "
        "never through a symlink",
    )


def _untrusted_writers(st: os.stat_result, trust: PidfileTrust) -> Optional[str]:
    """Who other than the trusted users could write the file or directory of st, or None."""
    if st.st_uid not in trust.uids:
        return f"owned by {user_words(st.st_uid)}"
    if st.st_mode & stat.S_IWOTH:
        return "writable by every user"
    if st.st_mode & stat.S_IWGRP:
        return f"writable by the group {_group_words(st.st_gid)}"
    return None


def _pid_in(data: bytes, path: str) -> Union[int, Unreadable]:
    """The pid on the first line; the bytes themselves are never quoted, only counted."""
    if len(data) > PIDFILE_MAX_BYTES:
        return malformed(path, f"not a pid: longer than {PIDFILE_MAX_BYTES} bytes")
    # latin-1 maps every byte to one character; decimal() refuses all but ASCII digits.
    pid = decimal(data.strip().split(b"\n", 1)[0].strip().decode("latin-1"))
    if pid is None or not 1 <= pid <= PID_MAX_LIMIT:
        return malformed(
            path,
            f"not a pid: {len(data)} bytes whose first line is not a number "
            f"from 1 to {PID_MAX_LIMIT}",
        )
    return pid
