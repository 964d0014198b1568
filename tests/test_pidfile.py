"""The pidfile trust model (memdoor.pidfile) against real files, directories and owners.

Every refusal is checked for its rule and for what it must not say: the file's
content. Reads that could block (a FIFO) run in a thread with a deadline, so a
regression fails the test instead of hanging the suite.
"""

from __future__ import annotations

import errno
import grp
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memdoor.collect.reading import Unreadable
from memdoor.pidfile import PIDFILE_MAX_BYTES, PidfileTrust, read_pid, trust_of
from memdoor.vocabulary import PID_MAX_LIMIT
from tests.pidfiles import (
    NOBODY,
    SECRET,
    owned_directory,
    owned_file,
    trusted_directory,
    unblock_fifo,
)

ROOT_ONLY = PidfileTrust()
NOBODYS_GROUP = grp.getgrgid(NOBODY.pw_gid).gr_name
# Generous: a read that does not block ends in milliseconds.
DEADLINE = 5.0


def read_within_deadline(path: Union[str, Path], trust: PidfileTrust = ROOT_ONLY) -> object:
    """read_pid in a daemon thread: the result, or a failure if it is still blocked."""
    results: list[object] = []
    reader = threading.Thread(target=lambda: results.append(read_pid(str(path), trust)))
    reader.daemon = True
    reader.start()
    reader.join(DEADLINE)
    if reader.is_alive():
        unblock_fifo(Path(path))
        pytest.fail(f"reading {path} blocked for {DEADLINE} s")
    return results[0]


def own_pid() -> bytes:
    return f"{os.getpid()}\n".encode()


def refusal(result: object, reason: str = "denied") -> str:
    assert isinstance(result, Unreadable), result
    assert result.reason == reason, result
    return result.detail


# --- read -----------------------------------------------------------------------------


def test_a_root_owned_pidfile_in_root_owned_directories_is_read(pidfile_dir: Path) -> None:
    path = owned_file(pidfile_dir / "app.pid", own_pid())
    assert read_within_deadline(path) == os.getpid()


def test_symlinks_in_the_directories_are_followed(pidfile_dir: Path) -> None:
    real = owned_directory(pidfile_dir / "real")
    owned_file(real / "app.pid", own_pid())
    (pidfile_dir / "relative").symlink_to("real")
    (pidfile_dir / "absolute").symlink_to(real)
    (pidfile_dir / "dotted").symlink_to(f"./../{pidfile_dir.name}/real")
    (pidfile_dir / "chained").symlink_to("relative")
    for link in ("relative", "absolute", "dotted", "chained"):
        assert read_within_deadline(pidfile_dir / link / "app.pid") == os.getpid(), link


@pytest.mark.skipif(not Path("/var/run").is_symlink(), reason="/var/run is not a symlink here")
def test_a_pidfile_under_var_run_is_read_through_its_symlink(pidfile_dir: Path) -> None:
    owned_file(pidfile_dir / "app.pid", own_pid())
    via_var_run = Path("/var/run") / pidfile_dir.relative_to("/run") / "app.pid"
    assert read_within_deadline(via_var_run) == os.getpid()


# --- refused: what the file is --------------------------------------------------------


def symlink_to_a_file(home: Path) -> Path:
    owned_file(home / "real.pid", own_pid())
    (home / "app.pid").symlink_to(home / "real.pid")
    return home / "app.pid"


def symlink_to_a_device(home: Path) -> Path:
    (home / "app.pid").symlink_to("/dev/zero")
    return home / "app.pid"


def symlink_to_a_secret(home: Path) -> Path:
    owned_file(home / "secret", SECRET, mode=0o600)
    (home / "app.pid").symlink_to(home / "secret")
    return home / "app.pid"


def symlink_to_etc_shadow(home: Path) -> Path:
    (home / "app.pid").symlink_to("/etc/shadow")
    return home / "app.pid"


def dangling_symlink(home: Path) -> Path:
    (home / "app.pid").symlink_to(home / "absent.pid")
    return home / "app.pid"


def fifo(home: Path) -> Path:
    os.mkfifo(home / "app.pid")
    return home / "app.pid"


def dev_zero(home: Path) -> Path:
    return Path("/dev/zero")


def unix_socket(home: Path) -> Path:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(home / "app.pid"))
    return home / "app.pid"


def a_directory(home: Path) -> Path:
    return owned_directory(home / "app.pid")


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (symlink_to_a_file, "a symlink"),
        (symlink_to_a_device, "a symlink"),
        (symlink_to_a_secret, "a symlink"),
        (symlink_to_etc_shadow, "a symlink"),
        (dangling_symlink, "a symlink"),
        (fifo, "a FIFO"),
        (dev_zero, "a character device"),
        (unix_socket, "a socket"),
        (a_directory, "a directory"),
    ],
)
def test_only_a_regular_file_is_read(
    pidfile_dir: Path, make: Callable[[Path], Path], kind: str
) -> None:
    detail = refusal(read_within_deadline(make(pidfile_dir)))
    assert detail == (
        f"{kind}, not a regular file: a pidfile is read only from a regular file, "
        "never through a symlink"
    )


# --- refused: who could have written it -----------------------------------------------


def owned_by_nobody(home: Path) -> tuple[Path, str]:
    path = owned_file(home / "app.pid", own_pid(), uid=NOBODY.pw_uid, gid=NOBODY.pw_gid)
    return path, f"the pidfile is owned by nobody (uid {NOBODY.pw_uid})"


def world_writable_file(home: Path) -> tuple[Path, str]:
    return owned_file(
        home / "app.pid", own_pid(), mode=0o646
    ), "the pidfile is writable by every user"


def group_writable_file(home: Path) -> tuple[Path, str]:
    path = owned_file(home / "app.pid", own_pid(), mode=0o664)
    return path, "the pidfile is writable by the group root (gid 0)"


def in_world_writable_directory(home: Path) -> tuple[Path, str]:
    open_to_all = owned_directory(home / "shared", mode=0o777)
    path = owned_file(open_to_all / "app.pid", own_pid())
    return path, f"the directory {open_to_all} is writable by every user"


def in_sticky_world_writable_directory(home: Path) -> tuple[Path, str]:
    sticky = owned_directory(home / "sticky", mode=0o1777)
    path = owned_file(sticky / "app.pid", own_pid())
    return path, f"the directory {sticky} is writable by every user"


def in_directory_writable_by_another_group(home: Path) -> tuple[Path, str]:
    shared = owned_directory(home / "shared", mode=0o775, gid=NOBODY.pw_gid)
    path = owned_file(shared / "app.pid", own_pid())
    return (
        path,
        f"the directory {shared} is writable by the group {NOBODYS_GROUP} (gid {NOBODY.pw_gid})",
    )


def in_directory_of_another_user(home: Path) -> tuple[Path, str]:
    theirs = owned_directory(home / "theirs", uid=NOBODY.pw_uid, gid=NOBODY.pw_gid)
    path = owned_file(theirs / "app.pid", own_pid())
    return path, f"the directory {theirs} is owned by nobody (uid {NOBODY.pw_uid})"


def below_a_directory_of_another_user(home: Path) -> tuple[Path, str]:
    theirs = owned_directory(home / "theirs", uid=NOBODY.pw_uid, gid=NOBODY.pw_gid)
    ours = owned_directory(theirs / "ours")
    path = owned_file(ours / "app.pid", own_pid())
    return path, f"the directory {theirs} is owned by nobody (uid {NOBODY.pw_uid})"


def through_a_symlink_into_tmp(home: Path) -> tuple[Path, str]:
    (home / "away").symlink_to("/tmp")
    return home / "away" / "app.pid", "the directory /tmp is writable by every user"


@pytest.mark.parametrize(
    "make",
    [
        owned_by_nobody,
        world_writable_file,
        group_writable_file,
        in_world_writable_directory,
        in_sticky_world_writable_directory,
        in_directory_writable_by_another_group,
        in_directory_of_another_user,
        below_a_directory_of_another_user,
        through_a_symlink_into_tmp,
    ],
)
def test_a_pidfile_another_user_could_write_is_refused(
    pidfile_dir: Path, make: Callable[[Path], tuple[Path, str]]
) -> None:
    path, rule = make(pidfile_dir)
    detail = refusal(read_within_deadline(path))
    assert detail.startswith(rule + ": "), detail
    assert detail.endswith(("root can create or replace it", "root can write is read")), detail


def test_a_pidfile_in_pytests_tmp_path_is_refused_for_tmp(tmp_path: Path) -> None:
    path = owned_file(tmp_path / "app.pid", own_pid())
    assert refusal(read_within_deadline(path)).startswith(
        "the directory /tmp is writable by every user: "
    )


# --- what cannot be walked --------------------------------------------------------------


def test_a_symlink_loop_on_the_way_is_an_error(pidfile_dir: Path) -> None:
    (pidfile_dir / "loop").symlink_to("loop")
    assert refusal(read_within_deadline(pidfile_dir / "loop" / "app.pid"), "error") == (
        "more than 40 symlinks"
    )


def test_a_file_on_the_way_is_not_a_directory(pidfile_dir: Path) -> None:
    owned_file(pidfile_dir / "file", own_pid())
    detail = refusal(read_within_deadline(pidfile_dir / "file" / "app.pid"), "error")
    assert detail == os.strerror(errno.ENOTDIR)


def test_a_missing_directory_is_vanished(pidfile_dir: Path) -> None:
    assert refusal(read_within_deadline(pidfile_dir / "absent" / "app.pid"), "vanished")


# --- content ------------------------------------------------------------------------------


def not_a_pid(content: bytes) -> str:
    if len(content) > PIDFILE_MAX_BYTES:
        return f"not a pid: longer than {PIDFILE_MAX_BYTES} bytes"
    return (
        f"not a pid: {len(content)} bytes whose first line is not a number from 1 to "
        f"{PID_MAX_LIMIT}"
    )


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\n",
        b"9" * 5000,
        b"9" * 20 + b"\n",
        f"{PID_MAX_LIMIT + 1}\n".encode(),
        b"0\n",
        b"-1\n",
        SECRET,
        b"\xff\xfe\x00\x01" + SECRET,
        b"123\n" + b"x" * 100,
        b"1" * (PIDFILE_MAX_BYTES + 1),
    ],
    ids=lambda content: f"{len(content)}-bytes",
)
def test_a_pidfile_without_a_pid_is_malformed_and_never_quoted(
    pidfile_dir: Path, content: bytes
) -> None:
    path = owned_file(pidfile_dir / "app.pid", content)
    detail = refusal(read_within_deadline(path), "malformed")
    assert detail == not_a_pid(content)
    assert b"s3cr3t" not in detail.encode()


def test_the_largest_pid_is_read(pidfile_dir: Path) -> None:
    path = owned_file(pidfile_dir / "app.pid", f"{PID_MAX_LIMIT}\n".encode())
    assert read_within_deadline(path) == PID_MAX_LIMIT


@pytest.fixture(scope="module")
def pidfile_home() -> Iterator[Path]:
    with trusted_directory() as home:
        yield home


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=2 * PIDFILE_MAX_BYTES))
def test_any_content_is_a_pid_or_malformed_in_fixed_words(
    pidfile_home: Path, content: bytes
) -> None:
    path = owned_file(pidfile_home / "any.pid", content)
    result = read_pid(str(path), ROOT_ONLY)
    first_line = content.strip().split(b"\n", 1)[0].strip()
    if isinstance(result, int):
        assert len(content) <= PIDFILE_MAX_BYTES
        assert first_line.isdigit() and int(first_line) == result
        assert 1 <= result <= PID_MAX_LIMIT
    else:
        assert (result.reason, result.detail) == ("malformed", not_a_pid(content))


# --- the trusted owner ---------------------------------------------------------------------


def test_the_owner_is_looked_up_by_name() -> None:
    assert trust_of(None) == PidfileTrust()
    assert trust_of("nobody") == PidfileTrust("nobody", NOBODY.pw_uid)
    assert trust_of("no-such-user-memdoor") == (
        "pidfile_owner 'no-such-user-memdoor' is not a user on this host"
    )


def test_the_owners_files_and_directories_are_trusted_as_roots(pidfile_dir: Path) -> None:
    trust = PidfileTrust("nobody", NOBODY.pw_uid)
    theirs = owned_directory(pidfile_dir / "theirs", uid=NOBODY.pw_uid, gid=NOBODY.pw_gid)
    path = owned_file(theirs / "app.pid", own_pid(), uid=NOBODY.pw_uid, gid=NOBODY.pw_gid)
    assert read_within_deadline(path, trust) == os.getpid()


def test_the_owner_does_not_make_group_or_world_writable_places_trusted(pidfile_dir: Path) -> None:
    trust = PidfileTrust("nobody", NOBODY.pw_uid)
    words = f"root and nobody (uid {NOBODY.pw_uid})"
    shared = owned_directory(
        pidfile_dir / "shared", mode=0o775, uid=NOBODY.pw_uid, gid=NOBODY.pw_gid
    )
    path = owned_file(shared / "app.pid", own_pid(), uid=NOBODY.pw_uid, gid=NOBODY.pw_gid)
    detail = refusal(read_within_deadline(path, trust))
    assert detail.startswith(f"the directory {shared} is writable by the group ")
    assert detail.endswith(f"no user but {words} can create or replace it")
    open_file = owned_file(pidfile_dir / "open.pid", own_pid(), mode=0o666, uid=NOBODY.pw_uid)
    assert refusal(read_within_deadline(open_file, trust)) == (
        f"the pidfile is writable by every user: only a pidfile that no user but {words} "
        "can write is read"
    )
