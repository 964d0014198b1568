"""What pidfile tests share.

Where the pidfiles go: memdoor reads one only from directories no user but root can
write (docs/configuration.md, "Pidfiles"), which rules out pytest's tmp_path under the
world-writable /tmp. Files, directories and a process of another user, nobody. And
a way out for a reader stuck on a FIFO, so that a regression fails a test instead
of hanging the suite.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from memdoor.lab.unavailable import LabUnavailable

NOBODY = pwd.getpwnam("nobody")
# What a pidfile pointing at /etc/shadow would hold: never to be seen in a record.
SECRET = b"root:$6$s3cr3t-hash-that-must-stay-private:19000:0:99999:7:::\n"


@contextlib.contextmanager
def trusted_directory() -> Iterator[Path]:
    """A new directory under /run, owned by root and writable by root alone, then removed."""
    if os.geteuid() != 0:
        raise LabUnavailable("a pidfile directory memdoor trusts is root's: needs root")
    path = Path(tempfile.mkdtemp(prefix="memdoor-test-", dir="/run"))
    try:
        os.chmod(path, 0o755)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def owned_file(path: Path, content: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> Path:
    path.write_bytes(content)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


def owned_directory(path: Path, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Path:
    path.mkdir()
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


@contextlib.contextmanager
def process_of_nobody() -> Iterator[int]:
    """The pid of a process whose every uid is nobody's; Popen returns once it exec'd."""
    child = subprocess.Popen(
        ["sleep", "600"], user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[]
    )
    try:
        yield child.pid
    finally:
        child.kill()
        child.wait()


def unblock_fifo(path: Path) -> None:
    """Open the FIFO's writing end for a moment: a reader blocked in open() goes on."""
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


@contextlib.contextmanager
def fifo_released_after(path: Path, seconds: float) -> Iterator[None]:
    """Whatever blocks on the FIFO at path is released after seconds, and every tenth
    of a second from then on until the block ends."""
    done = threading.Event()

    def release() -> None:
        if done.wait(seconds):
            return
        while not done.wait(0.1):
            unblock_fifo(path)

    releaser = threading.Thread(target=release, daemon=True)
    releaser.start()
    try:
        yield
    finally:
        done.set()
        releaser.join()
