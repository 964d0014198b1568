"""The netlink dump against /proc/net on real loopback sockets, and where it is not used."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from memdoor.collect.connections import TABLES, read_connections
from memdoor.collect.reading import Unreadable
from memdoor.collect.sock_diag import dump_sockets, in_own_network_namespace
from memdoor.procfs.errors import ParseError
from memdoor.procfs.net import Socket, parse_net_table
from tests.collect.trees import COMPLETE, MODERN


@pytest.fixture
def loopback_sockets() -> Iterator[set[int]]:
    """Sockets of every kind this process holds, with bytes waiting in two queues;
    their inodes."""
    with contextlib.ExitStack() as stack:
        kept: list[socket.socket] = []

        def keep(sock: socket.socket) -> socket.socket:
            kept.append(stack.enter_context(sock))
            return sock

        listener = keep(socket.create_server(("127.0.0.1", 0)))
        client = keep(socket.create_connection(listener.getsockname()))
        server = keep(listener.accept()[0])
        client.sendall(b"x" * 300)
        listener6 = keep(socket.create_server(("::1", 0), family=socket.AF_INET6))
        keep(socket.create_connection(listener6.getsockname()[:2]))
        keep(listener6.accept()[0])
        receiver = keep(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        receiver.bind(("127.0.0.1", 0))
        keep(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)).sendto(
            b"y" * 100, receiver.getsockname()
        )
        keep(socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)).connect(("::1", 9))
        # Bound, neither listening nor connected: in no /proc/net table, so in no dump.
        keep(socket.socket()).bind(("127.0.0.1", 0))
        # Loopback delivers in softirq: wait until both queues show their bytes.
        deadline = time.monotonic() + 30
        waiting = {os.fstat(server.fileno()).st_ino, os.fstat(receiver.fileno()).st_ino}
        while not all(s.rx_queue for s in _from_proc_net(waiting)):
            assert time.monotonic() < deadline, "the bytes never reached the receive queues"
            time.sleep(0.05)
        yield {os.fstat(sock.fileno()).st_ino for sock in kept}


def _from_proc_net(inodes: set[int]) -> list[Socket]:
    sockets = []
    for table, protocol, family in TABLES:
        with open(f"/proc/{os.getpid()}/net/{table}") as text:
            sockets += parse_net_table(text.read(), protocol, family, inodes)
    return sockets


def test_the_dump_gives_what_proc_net_gives(loopback_sockets: set[int]) -> None:
    dumped = []
    for _table, protocol, family in TABLES:
        found = dump_sockets(protocol, family, loopback_sockets)
        assert found is not None
        dumped += found
    from_text = _from_proc_net(loopback_sockets)
    assert sorted(dumped, key=lambda s: s.inode) == sorted(from_text, key=lambda s: s.inode)
    # All but the bound one, which no table lists.
    assert len({s.inode for s in dumped}) == len(loopback_sockets) - 1
    assert {s.inode for s in dumped} < loopback_sockets
    assert {(s.protocol, s.family) for s in dumped} == {
        ("tcp", 4),
        ("tcp", 6),
        ("udp", 4),
        ("udp", 6),
    }


def test_a_failing_dump_falls_back_to_proc_net(
    loopback_sockets: set[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> object:
        raise ParseError("sock_diag: a reply that does not parse")

    monkeypatch.setattr("memdoor.collect.sock_diag.parse_dump_reply", broken)
    assert dump_sockets("tcp", 4, loopback_sockets) is None
    problems: list[Unreadable] = []
    sockets = read_connections(os.getpid(), problems)
    assert problems == []
    assert sockets is not None
    mine = sorted((s for s in sockets if s.inode in loopback_sockets), key=lambda s: s.inode)
    assert mine == sorted(_from_proc_net(loopback_sockets), key=lambda s: s.inode)


def test_only_a_process_in_this_namespace_is_dumped() -> None:
    assert in_own_network_namespace(os.getpid())
    assert not in_own_network_namespace(COMPLETE, MODERN)
    assert not in_own_network_namespace(999999)


@pytest.mark.skipif(
    shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0,
    reason="needs root, unshare and ip",
)
def test_a_process_in_another_namespace_is_read_from_its_proc_net() -> None:
    """Its listener is in no dump memdoor can make, only in its own /proc/PID/net."""
    child = subprocess.Popen(
        [
            "unshare",
            "--net",
            "sh",
            "-c",
            'ip link set lo up && exec "$0" -c "$1"',
            sys.executable,
            "import socket, sys; s = socket.create_server(('127.0.0.1', 0)); "
            "print(s.getsockname()[1], flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        assert not in_own_network_namespace(child.pid)
        problems: list[Unreadable] = []
        sockets = read_connections(child.pid, problems)
        assert problems == []
        assert sockets is not None
        assert [(s.state, s.local) for s in sockets] == [("LISTEN", f"127.0.0.1:{port}")]
    finally:
        child.kill()
        child.wait()
