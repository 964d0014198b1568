"""What iproute2's ``ss`` says a process's TCP and UDP sockets are.

``ss`` asks the kernel through netlink (inet_diag), not through /proc/net, so
it is an independent witness for memdoor's /proc/net reading. Output is parsed
from ``ss -H -t -u -a -n -p -e`` run once per address family: ``-4``/``-6``
tell the family even where the address alone cannot (``*`` is the wildcard of
a dual-stack IPv6 socket).

How ss differs from /proc/net, and what this module does about it:

- Addresses: ss prints ``127.0.0.1:80``, ``[::1]:80``, ``*:80``, and an
  interface bound with SO_BINDTODEVICE as ``127.0.0.53%lo:53`` or
  ``[fe80::1]%eth0:123``. ``local`` keeps the address text (``*`` becomes
  0.0.0.0 or ::, the all-zero address /proc shows; the ``%ifname`` is dropped,
  /proc has no such column). ``remote`` is None for an unconnected socket,
  which ss prints as ``0.0.0.0:*``, ``[::]:*`` or ``*:*``.
- IPv4-mapped IPv6 addresses come out as ``::ffff:127.0.0.1`` (inet_ntop);
  Python's ipaddress prints ``::ffff:7f00:1`` before 3.13.
- States: ss has its own names (iproute2 ss.c ``sstate_name``); /proc/net has
  a hex number whose name is in include/net/tcp_states.h.
  :data:`SS_TO_KERNEL_STATE` maps one to the other. UDP reuses the TCP
  numbers: a connected UDP socket is 01 ESTABLISHED (ss: ESTAB), an
  unconnected one is 07 CLOSE (ss: UNCONN) — checked on this kernel by
  tests/test_workload.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Literal, NamedTuple, Optional

import pytest

from memdoor.procfs.errors import ParseError

Proto = Literal["tcp", "udp"]
Family = Literal[4, 6]

SS_TO_KERNEL_STATE = {
    "ESTAB": "ESTABLISHED",
    "SYN-SENT": "SYN_SENT",
    # Also NEW_SYN_RECV (12): the kernel's request sockets, which ss shows
    # with the state of the connection they stand for.
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "LISTEN": "LISTEN",
    "CLOSING": "CLOSING",
}

needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="iproute2's ss is not installed")


class Endpoint(NamedTuple):
    address: str
    port: int

    def __str__(self) -> str:
        """The form the workload's ready line and memdoor's records use."""
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


class SsUser(NamedTuple):
    """One holder of the socket: a socket shared across fork has several."""

    name: str
    pid: int
    fd: int


@dataclass(frozen=True)
class SsSocket:
    proto: Proto
    family: Family
    state: str
    recv_q: int
    send_q: int
    local: Endpoint
    remote: Optional[Endpoint]
    inode: int
    users: tuple[SsUser, ...]

    @property
    def kernel_state(self) -> str:
        """The state as /proc/net names it."""
        return kernel_state(self.state)


def kernel_state(ss_state: str) -> str:
    try:
        return SS_TO_KERNEL_STATE[ss_state]
    except KeyError:
        raise ValueError(f"ss state {ss_state!r} has no /proc/net name") from None


_FAMILIES: tuple[Family, ...] = (4, 6)
_UNSPECIFIED = {4: "0.0.0.0", 6: "::"}
_USERS = re.compile(r'users:\(((?:\("[^"]*",pid=\d+,fd=\d+\),?)+)\)')
_USER = re.compile(r'\("([^"]*)",pid=(\d+),fd=(\d+)\)')
_INODE = re.compile(r"(?:^|\s)ino:(\d+)(?:\s|$)")


def parse_endpoint(text: str, family: Family) -> Endpoint:
    address, sep, port = text.rpartition(":")
    if not sep or not address:
        raise ParseError(f"ss: endpoint {text!r} has no address:port")
    address = address.partition("%")[0]
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if address == "*":
        address = _UNSPECIFIED[family]
    if port == "*":
        return Endpoint(address, 0)
    if not port.isdigit():
        raise ParseError(f"ss: port of {text!r} is not a number")
    return Endpoint(address, int(port))


def parse_ss_line(line: str, family: Family) -> SsSocket:
    """One line of ``ss -H -t -u -a -n -p -e`` output, text in, typed socket out.

    The netid column is there because both -t and -u are asked for (ss
    drops it when one protocol is selected). The first six columns never
    contain blanks; the rest (users, ino:, sk:,
    cgroup:, v6only:, ...) is searched by key, because ss adds keys over
    versions and a process name may contain blanks.
    """
    columns = line.split(None, 6)
    if len(columns) < 6:
        raise ParseError(f"ss: too few columns in {line!r}")
    proto, state, recv_q, send_q, local, peer = columns[:6]
    extra = columns[6] if len(columns) == 7 else ""
    if proto not in ("tcp", "udp"):
        raise ParseError(f"ss: unexpected netid {proto!r}")
    if not (recv_q.isdigit() and send_q.isdigit()):
        raise ParseError(f"ss: queue sizes {recv_q!r} {send_q!r} are not numbers")
    users: tuple[SsUser, ...] = ()
    users_match = _USERS.search(extra)
    if users_match:
        users = tuple(
            SsUser(name, int(pid), int(fd)) for name, pid, fd in _USER.findall(users_match[1])
        )
        extra = extra[users_match.end() :]
    inode_match = _INODE.search(extra)
    if inode_match is None:
        raise ParseError(f"ss: no ino: in {line!r} (was -e given?)")
    remote = parse_endpoint(peer, family)
    unconnected = remote.port == 0 and remote.address == _UNSPECIFIED[family]
    return SsSocket(
        proto="tcp" if proto == "tcp" else "udp",
        family=family,
        state=state,
        recv_q=int(recv_q),
        send_q=int(send_q),
        local=parse_endpoint(local, family),
        remote=None if unconnected else remote,
        inode=int(inode_match[1]),
        users=users,
    )


def ss_sockets() -> list[SsSocket]:
    """Every TCP and UDP socket of this network namespace, as ss sees them."""
    sockets: list[SsSocket] = []
    for family in _FAMILIES:
        result = subprocess.run(
            ["ss", "-H", "-t", "-u", "-a", "-n", "-p", "-e", f"-{family}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        sockets.extend(parse_ss_line(line, family) for line in result.stdout.splitlines() if line)
    return sockets


def ss_connections(pid: int) -> list[SsSocket]:
    """The sockets ``pid`` holds an fd of; needs root (or the same user) for -p."""
    return [sock for sock in ss_sockets() if any(user.pid == pid for user in sock.users)]
