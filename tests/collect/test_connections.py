from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from memdoor.collect.connections import read_connections, read_socket_inodes
from memdoor.collect.reading import Unreadable
from memdoor.procfs.net import Socket
from tests.collect.trees import COMPLETE, MISSING, MODERN, OLD_KERNEL, deny

pytestmark = pytest.mark.skipif(
    sys.byteorder != "little", reason="the trees were recorded on a little-endian host"
)

INODES = {9966, *range(11432, 11443)}
IPV6_INODES = {11434, 11435, 11436, 11437, 11439, 11442}
TCP4_INODES = {9966, 11432, 11433, 11438}


@pytest.fixture
def copied_tree(tmp_path: Path) -> Path:
    shutil.copytree(f"{MODERN}/{COMPLETE}", tmp_path / str(COMPLETE), symlinks=True)
    return tmp_path


def test_socket_inodes_come_from_fd_links() -> None:
    problems: list[Unreadable] = []
    # fds 0-2 are /dev/null; the rest are sockets.
    assert read_socket_inodes(COMPLETE, problems, MODERN) == INODES
    assert problems == []


def test_connections_of_the_recorded_process() -> None:
    problems: list[Unreadable] = []
    sockets = read_connections(COMPLETE, problems, MODERN)
    assert problems == []
    assert sockets is not None
    assert {s.inode for s in sockets} == INODES
    by_inode = {s.inode: s for s in sockets}
    assert by_inode[9966] == Socket(
        "tcp", 4, "LISTEN", "127.0.0.1", 36221, "0.0.0.0", 0, 0, 2, 9966
    )
    assert (by_inode[11439].family, by_inode[11439].local_address) == (6, "::ffff:127.0.0.1")
    assert (by_inode[11440].protocol, by_inode[11440].state) == ("udp", "CLOSE")
    # Rows of the accept queue (inode 0) and other processes' rows are not ours.
    assert 0 not in by_inode


def test_kernel_without_ipv6_tables() -> None:
    problems: list[Unreadable] = []
    sockets = read_connections(COMPLETE, problems, OLD_KERNEL)
    assert problems == []
    assert sockets is not None
    assert {s.inode for s in sockets} == INODES - IPV6_INODES


def test_no_sockets_means_no_table_read(copied_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """net/tcp lists the whole namespace; a process without sockets must not pay for it."""
    fd_dir = copied_tree / str(COMPLETE) / "fd"
    for fd in os.listdir(fd_dir):
        if os.readlink(fd_dir / fd).startswith("socket:"):
            (fd_dir / fd).unlink()
    tables = [f"{copied_tree}/{COMPLETE}/net/{t}" for t in ("tcp", "tcp6", "udp", "udp6")]
    deny(monkeypatch, *tables)
    problems: list[Unreadable] = []
    assert read_connections(COMPLETE, problems, str(copied_tree)) == []
    assert problems == []


def test_tables_after_the_last_socket_found_are_not_read(
    copied_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process whose sockets are all IPv4 TCP pays for net/tcp alone."""
    fd_dir = copied_tree / str(COMPLETE) / "fd"
    for fd in os.listdir(fd_dir):
        link = os.readlink(fd_dir / fd)
        if link.startswith("socket:") and int(link[8:-1]) not in TCP4_INODES:
            (fd_dir / fd).unlink()
    tables = [f"{copied_tree}/{COMPLETE}/net/{t}" for t in ("tcp6", "udp", "udp6")]
    deny(monkeypatch, *tables)
    problems: list[Unreadable] = []
    sockets = read_connections(COMPLETE, problems, str(copied_tree))
    assert problems == []
    assert sockets is not None and {s.inode for s in sockets} == TCP4_INODES


def test_malformed_table_is_reported_and_the_others_kept(copied_tree: Path) -> None:
    tcp = copied_tree / str(COMPLETE) / "net" / "tcp"
    tcp.write_text(tcp.read_text() + "garbage\n")
    problems: list[Unreadable] = []
    sockets = read_connections(COMPLETE, problems, str(copied_tree))
    assert [(p.what, p.reason) for p in problems] == [(str(tcp), "malformed")]
    assert sockets is not None
    assert {s.inode for s in sockets} == INODES - TCP4_INODES


def test_denied_table(monkeypatch: pytest.MonkeyPatch) -> None:
    deny(monkeypatch, f"{MODERN}/{COMPLETE}/net/udp")
    problems: list[Unreadable] = []
    sockets = read_connections(COMPLETE, problems, MODERN)
    assert [(p.what, p.reason) for p in problems] == [(f"{MODERN}/{COMPLETE}/net/udp", "denied")]
    assert sockets is not None and {s.inode for s in sockets} == INODES - {11440, 11441}


def test_denied_fd_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    deny(monkeypatch, f"{MODERN}/{COMPLETE}/fd")
    problems: list[Unreadable] = []
    assert read_connections(COMPLETE, problems, MODERN) is None
    assert [(p.what, p.reason) for p in problems] == [(f"{MODERN}/{COMPLETE}/fd", "denied")]


def test_denied_fd_links_are_reported_once(monkeypatch: pytest.MonkeyPatch) -> None:
    fd_dir = f"{MODERN}/{COMPLETE}/fd"
    deny(monkeypatch, *(f"{fd_dir}/{fd}" for fd in os.listdir(fd_dir)))
    problems: list[Unreadable] = []
    assert read_connections(COMPLETE, problems, MODERN) is None
    assert [(p.what, p.reason) for p in problems] == [(fd_dir, "denied")]


def test_fd_closed_between_listing_and_readlink_is_skipped(
    copied_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fd_dir = copied_tree / str(COMPLETE) / "fd"
    names = os.listdir(fd_dir)
    (fd_dir / "3").unlink()
    monkeypatch.setattr("memdoor.collect.connections.list_dir", lambda path: names)
    problems: list[Unreadable] = []
    sockets = read_connections(COMPLETE, problems, str(copied_tree))
    assert problems == []
    assert sockets is not None and {s.inode for s in sockets} == INODES - {9966}


def test_vanished_process() -> None:
    problems: list[Unreadable] = []
    assert read_connections(MISSING, problems, MODERN) is None
    assert [(p.what, p.reason) for p in problems] == [(f"{MODERN}/{MISSING}/fd", "vanished")]
