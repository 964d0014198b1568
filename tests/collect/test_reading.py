"""The read helpers turn every OS failure into a value; a real kernel supplies each errno."""

from __future__ import annotations

import errno
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from memdoor.collect.reading import (
    Reason,
    Unreadable,
    list_dir,
    read_bytes,
    read_link,
    read_text,
    unreadable_from_oserror,
)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory nobody can enter (pytest's tmp_path sits under a 0700 one)."""
    with tempfile.TemporaryDirectory(prefix="memdoor-read-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def read_as_nobody(path: str) -> object:
    """read_bytes in a forked child that dropped root, so the kernel really says EACCES."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(rfd)
            os.setgid(65534)
            os.setuid(65534)
            os.write(wfd, pickle.dumps(read_bytes(path)))
        finally:
            os._exit(0)
    os.close(wfd)
    try:
        with os.fdopen(rfd, "rb") as pipe:
            data = pipe.read()
    finally:
        os.waitpid(pid, 0)
    return pickle.loads(data)


def test_a_whole_file_is_read(tmp_path: Path) -> None:
    # More than one 1 MiB chunk.
    payload = bytes(range(256)) * 5000
    (tmp_path / "f").write_bytes(payload)
    assert read_bytes(str(tmp_path / "f")) == payload
    own_stat = read_text("/proc/self/stat")
    assert isinstance(own_stat, str) and own_stat.startswith(f"{os.getpid()} (")


def test_missing_file_vanished(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    for reader in (read_bytes, read_text, read_link, list_dir):
        result = reader(missing)
        assert isinstance(result, Unreadable)
        assert (result.what, result.reason) == (missing, "vanished")


def test_a_directory_is_an_error(tmp_path: Path) -> None:
    result = read_bytes(str(tmp_path))
    assert result == Unreadable(str(tmp_path), "error", os.strerror(errno.EISDIR))


def test_readlink_of_a_regular_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    result = read_link(str(tmp_path / "f"))
    assert isinstance(result, Unreadable)
    assert result.reason == "error"


def test_denied_by_the_kernel(shared_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to nobody")
    public, secret = shared_dir / "public", shared_dir / "secret"
    public.write_bytes(b"open")
    public.chmod(0o644)
    secret.write_bytes(b"closed")
    secret.chmod(0o600)
    # The public file proves nobody reaches the directory: the denial is the file's.
    assert read_as_nobody(str(public)) == b"open"
    assert read_as_nobody(str(secret)) == Unreadable(
        str(secret), "denied", os.strerror(errno.EACCES)
    )


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (errno.ENOENT, "vanished"),
        # What a read of /proc/PID/* returns when the task died mid-read.
        (errno.ESRCH, "vanished"),
        (errno.EACCES, "denied"),
        (errno.EPERM, "denied"),
        (errno.EIO, "error"),
    ],
)
def test_errno_to_reason(number: int, reason: Reason) -> None:
    result = unreadable_from_oserror("/proc/1/x", OSError(number, os.strerror(number)))
    assert result == Unreadable("/proc/1/x", reason, os.strerror(number))


def test_to_dict() -> None:
    assert Unreadable("p", "malformed", "d").to_dict() == {
        "what": "p",
        "reason": "malformed",
        "detail": "d",
    }
