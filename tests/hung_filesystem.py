"""A FUSE file system that never answers: every access below its mount point blocks.

What a hard NFS mount whose server went away does to a reader, without a server:
the kernel sends FUSE_INIT when the file system is mounted, and until a daemon
answers it every request waits, in the kernel, for as long as the connection
lives. Closing the /dev/fuse descriptor aborts the connection, so the waiting
calls fail (ENOTCONN) and the mount can go.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

from memdoor.lab.unavailable import LabUnavailable

# <sys/mount.h>
_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2


@contextlib.contextmanager
def hung_filesystem(mountpoint: Path) -> Iterator[Path]:
    """Mount a FUSE file system nobody serves on mountpoint, a directory made for it."""
    if os.geteuid() != 0:
        raise LabUnavailable("mounting a FUSE file system needs root")
    try:
        fuse = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise LabUnavailable(f"/dev/fuse: {exc.strerror}") from None
    libc = ctypes.CDLL(None, use_errno=True)
    mountpoint.mkdir()
    target = os.fsencode(mountpoint)
    options = f"fd={fuse},rootmode=40000,user_id=0,group_id=0".encode()
    if libc.mount(b"memdoor-test", target, b"fuse", _MS_NOSUID | _MS_NODEV, options) != 0:
        error = ctypes.get_errno()
        os.close(fuse)
        mountpoint.rmdir()
        raise LabUnavailable(f"cannot mount a FUSE file system: {os.strerror(error)}")
    try:
        yield mountpoint
    finally:
        os.close(fuse)
        libc.umount2(target, _MNT_DETACH)
        mountpoint.rmdir()
