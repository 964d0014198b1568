#!/usr/bin/env python3
"""A real process for memdoor to watch: known memory, mappings and sockets, grown on cue.

memdoor reads other processes' /proc files, so its tests need a process whose
memory, mappings and sockets are known in advance and really exist in the
kernel; the benchmarks need one that grows at a chosen rate until the OOM
killer ends it, and ``memdoor demo`` is meant to show such a kill. This script
builds that state, announces it with one JSON line on stdout, then holds still
until told to go (stdin closed, SIGTERM or SIGINT), and exits 0. It never
forks, so it cannot leave children behind.

Growth after ready can wait for a line on stdin (``--grow-after-stdin-line``),
so a parent can first get a watcher attached to the pid and then say when the
allocation starts: the time from that line to the OOM kill is then the
allocator's alone, not the interpreter's start-up.

Run as ``python -m memdoor.lab.workload [options]``. It uses the standard
library only (Python 3.9+), so this one file also runs on its own where memdoor
is not importable (the system tests copy it into their containers). The parent
side (start, wait for the ready line, stop and reap) is
:func:`memdoor.lab.workload_parent.start_workload`.

The ready line::

    {"pid": N, "exe": "/usr/bin/python3.11", "sockets": [...], "mappings": N,
     "touched_mb": N}

``sockets`` lists every socket the workload holds, each
``{"proto": "tcp"|"udp", "family": 4|6, "local": "127.0.0.1:P" | "[::1]:P",
"remote": same form or null, "state": "LISTEN"|"ESTABLISHED"|"UNCONN",
"inode": N}``. The states are the ones the task agreed on: LISTEN and
ESTABLISHED as /proc/net names them (ss says ESTAB), UNCONN as ss names an
unconnected UDP socket (/proc/net says CLOSE, state 07); the tests' ss helpers map
between the two. ``mappings`` is the number of lines in /proc/self/maps at
ready time; ``touched_mb`` is what ``--touch-mb`` made resident.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import mmap
import os
import resource
import select
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Optional, TypedDict

MIB = 1 << 20
PAGE = mmap.PAGESIZE

# Private, not mmap's default MAP_SHARED: a shared anonymous mapping is shmem,
# counted in RssShmem rather than RssAnon, and memdoor's figures would tell a
# different story than the heap growth of a real leaking process.
_ANON_FLAGS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS

# Each --tcp-pairs pair costs two fds; this covers stdio, the listener, the
# --sockets set and what the interpreter opens itself.
_SPARE_FDS = 32


class SocketInfo(TypedDict):
    proto: str
    family: int
    local: str
    remote: Optional[str]
    state: str
    inode: int


class ReadyInfo(TypedDict):
    pid: int
    exe: str
    sockets: list[SocketInfo]
    mappings: int
    touched_mb: int


class _Stop(Exception):
    """Raised from the signal handler so every cleanup ``finally`` still runs."""


def _stop_on_signal(signum: int, frame: Optional[FrameType]) -> None:
    # One-shot: a second SIGTERM during cleanup must not abort the cleanup;
    # the parent escalates to SIGKILL if we are too slow anyway.
    signal.signal(signum, signal.SIG_IGN)
    raise _Stop


def allocate_touched(mib: int) -> mmap.mmap:
    """Map ``mib`` MiB and write one byte per page: untouched pages cost no RSS."""
    region = mmap.mmap(-1, mib * MIB, flags=_ANON_FLAGS)
    for offset in range(0, mib * MIB, PAGE):
        region[offset] = 0x5A
    return region


def count_mappings() -> int:
    with open("/proc/self/maps", "rb") as maps:
        return maps.read().count(b"\n")


def count_one_page_anonymous() -> int:
    """One-page anonymous VMAs: ours, since the interpreter's arenas are far larger."""
    count = 0
    with open("/proc/self/maps", "rb") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(value, 16) for value in fields[0].split(b"-"))
            count += end - start == PAGE and len(fields) == 5
    return count


def add_unmergeable_mappings(count: int) -> list[mmap.mmap]:
    """Create ``count`` more VMAs, each one page, that the kernel cannot merge.

    The kernel merges adjacent anonymous mappings with equal protection into
    one VMA, so the pages alternate between read-only and read-execute: the
    interpreter maps its own memory read-write, and a later allocation of its
    next to a read-write page of ours would merge with it. Anything else that
    merges is caught: the one-page VMAs are counted in /proc/self/maps and topped up
    (counting every line instead would let a new interpreter arena stand in
    for one of ours).
    """
    mappings: list[mmap.mmap] = []
    target = count_one_page_anonymous() + count
    for _ in range(10):
        missing = target - count_one_page_anonymous()
        if missing <= 0:
            return mappings
        for _ in range(missing):
            protection = mmap.PROT_READ if len(mappings) % 2 else mmap.PROT_READ | mmap.PROT_EXEC
            mappings.append(mmap.mmap(-1, PAGE, flags=_ANON_FLAGS, prot=protection))
    raise RuntimeError(
        f"could not reach {target} one-page mappings (have {count_one_page_anonymous()})"
    )


def format_endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def describe_socket(sock: socket.socket, state: str) -> SocketInfo:
    local = sock.getsockname()
    try:
        peer = sock.getpeername()
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise
        remote = None
    else:
        remote = format_endpoint(peer[0], peer[1])
    return {
        "proto": "tcp" if sock.type == socket.SOCK_STREAM else "udp",
        "family": 6 if sock.family == socket.AF_INET6 else 4,
        "local": format_endpoint(local[0], local[1]),
        "remote": remote,
        "state": state,
        # The socket's inode in sockfs: the number /proc/PID/fd links,
        # /proc/net/* rows and ss's ino: all name it by.
        "inode": os.fstat(sock.fileno()).st_ino,
    }


class _Sockets:
    """Every socket the workload holds, closed together on the way out."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        self._stack = stack
        self.info: list[SocketInfo] = []

    def keep(self, sock: socket.socket, state: str) -> socket.socket:
        self._stack.enter_context(sock)
        self.info.append(describe_socket(sock, state))
        return sock

    def connected_pair(self, listener: socket.socket) -> None:
        """Both ends of one loopback TCP connection, the server end accepted."""
        client = socket.socket(listener.family, socket.SOCK_STREAM)
        self._stack.enter_context(client)
        client.connect(listener.getsockname()[:2])
        server, _ = listener.accept()
        self.info.append(describe_socket(client, "ESTABLISHED"))
        self.keep(server, "ESTABLISHED")

    def loopback_set(self) -> None:
        """The --sockets set: a bit of every kind, on both address families."""
        bound_udp: list[socket.socket] = []
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.bind((address, 0))
            listener.listen()
            self.keep(listener, "LISTEN")
            self.connected_pair(listener)
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.bind((address, 0))
            bound_udp.append(self.keep(udp, "UNCONN"))
        connected_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        connected_udp.connect(bound_udp[0].getsockname())
        self.keep(connected_udp, "ESTABLISHED")

    def tcp_pairs(self, count: int) -> None:
        """``count`` established pairs; the listener that made them is closed."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            for _ in range(count):
                self.connected_pair(listener)


def raise_fd_limit(needed: int) -> None:
    """Soft limit up to the hard one: 2,000 pairs need 4,000 fds, above the usual 1,024."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"workload: need {needed} fds but RLIMIT_NOFILE hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Growth:
    """Memory added after ready in 1 MiB blocks, paced by the clock or as fast as possible.

    Pacing counts from :meth:`start`, so growth that waited for a go line does
    not rush to catch up with the time it spent waiting.
    """

    def __init__(
        self,
        mib_per_s: Optional[float],
        limit_mib: Optional[int],
        start_mib: int,
        started: bool = True,
    ):
        self._mib_per_s = mib_per_s
        self._limit_mib = limit_mib
        self._start_mib = start_mib
        self._started = time.monotonic() if started else None
        self._blocks: list[mmap.mmap] = []

    def start(self) -> None:
        if self._started is None:
            self._started = time.monotonic()

    def seconds_to_next(self, now: float) -> Optional[float]:
        """How long until the next block is due: 0 means now, None means never (or not yet)."""
        if self._started is None:
            return None
        if self._limit_mib is not None and self._start_mib + len(self._blocks) >= self._limit_mib:
            return None
        if self._mib_per_s is None:
            return 0.0
        due = self._started + (len(self._blocks) + 1) / self._mib_per_s
        return max(0.0, due - now)

    def add_block(self) -> None:
        self._blocks.append(allocate_touched(1))


def hold(stdin_fd: int, growth: Optional[Growth], exit_at: Optional[float]) -> None:
    """Wait for stdin EOF or ``exit_at``, adding growth blocks when they fall due.

    stdin EOF is how a parent that dies without cleaning up still ends us: its
    end of the pipe closes with it. A complete line on stdin starts growth that
    waits for one; anything else written to stdin is ignored.
    """
    while True:
        now = time.monotonic()
        waits = []
        if exit_at is not None:
            if now >= exit_at:
                return
            waits.append(exit_at - now)
        growth_wait = growth.seconds_to_next(now) if growth is not None else None
        if growth_wait is not None:
            waits.append(growth_wait)
        readable, _, _ = select.select([stdin_fd], [], [], min(waits) if waits else None)
        if readable:
            data = os.read(stdin_fd, 65536)
            if not data:
                return
            if growth is not None and b"\n" in data:
                growth.start()
        if growth is not None and growth.seconds_to_next(time.monotonic()) == 0.0:
            growth.add_block()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m memdoor.lab.workload",
        description="Hold known memory, mappings and sockets until stdin closes or SIGTERM.",
    )
    parser.add_argument(
        "--touch-mb",
        type=int,
        default=0,
        metavar="N",
        help="make N MiB of private anonymous memory resident before ready",
    )
    parser.add_argument(
        "--sockets",
        action="store_true",
        help="TCP listener, TCP pair and bound UDP on 127.0.0.1 and ::1, "
        "plus a connected UDP socket on 127.0.0.1",
    )
    parser.add_argument(
        "--tcp-pairs",
        type=int,
        default=0,
        metavar="N",
        help="N extra established loopback TCP pairs (2N sockets)",
    )
    parser.add_argument(
        "--mappings",
        type=int,
        default=0,
        metavar="N",
        help="N extra one-page mappings the kernel cannot merge",
    )
    parser.add_argument(
        "--grow-mb-per-s",
        type=float,
        metavar="R",
        help="after ready, add memory at about R MiB/s (needs --grow-to-mb)",
    )
    parser.add_argument(
        "--grow-to-mb",
        type=int,
        metavar="M",
        help="stop growing once M MiB in all (--touch-mb included) are touched",
    )
    parser.add_argument(
        "--grow-until-killed",
        action="store_true",
        help="after ready, add 1 MiB blocks forever: at --grow-mb-per-s if given, "
        "else as fast as possible",
    )
    parser.add_argument(
        "--grow-after-stdin-line",
        action="store_true",
        help="start growing only once a line arrives on stdin, not at ready",
    )
    parser.add_argument(
        "--exit-after", type=float, metavar="S", help="exit 0 on our own S seconds after ready"
    )
    args = parser.parse_args(argv)
    for name in ("touch_mb", "tcp_pairs", "mappings"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.grow_to_mb is not None and args.grow_until_killed:
        parser.error("--grow-to-mb and --grow-until-killed exclude each other")
    if args.grow_to_mb is not None and args.grow_mb_per_s is None:
        parser.error("--grow-to-mb needs --grow-mb-per-s")
    if args.grow_mb_per_s is not None and args.grow_to_mb is None and not args.grow_until_killed:
        parser.error("--grow-mb-per-s needs --grow-to-mb or --grow-until-killed")
    if args.grow_mb_per_s is not None and args.grow_mb_per_s <= 0:
        parser.error("--grow-mb-per-s must be positive")
    if args.grow_to_mb is not None and args.grow_to_mb < args.touch_mb:
        parser.error("--grow-to-mb counts --touch-mb too, so it cannot be smaller")
    if args.grow_after_stdin_line and args.grow_to_mb is None and not args.grow_until_killed:
        parser.error("--grow-after-stdin-line needs --grow-to-mb or --grow-until-killed")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    try:
        with contextlib.ExitStack() as stack:
            if args.touch_mb:
                stack.enter_context(allocate_touched(args.touch_mb))
            sockets = _Sockets(stack)
            if args.sockets:
                sockets.loopback_set()
            if args.tcp_pairs:
                raise_fd_limit(2 * args.tcp_pairs + _SPARE_FDS)
                sockets.tcp_pairs(args.tcp_pairs)
            for mapping in add_unmergeable_mappings(args.mappings):
                stack.enter_context(mapping)
            ready: ReadyInfo = {
                "pid": os.getpid(),
                "exe": os.path.realpath("/proc/self/exe"),
                "sockets": sockets.info,
                "mappings": count_mappings(),
                "touched_mb": args.touch_mb,
            }
            sys.stdout.write(json.dumps(ready, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            growth = None
            if args.grow_until_killed or args.grow_to_mb is not None:
                growth = Growth(
                    args.grow_mb_per_s,
                    args.grow_to_mb,
                    args.touch_mb,
                    started=not args.grow_after_stdin_line,
                )
            exit_at = None if args.exit_after is None else time.monotonic() + args.exit_after
            hold(sys.stdin.fileno(), growth, exit_at)
    except _Stop:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
