"""Parse /proc/PID/net/{tcp,tcp6,udp,udp6} and socket links from /proc/PID/fd.

The tables list every socket of the network namespace; a process owns the rows
whose inode appears among its fd links ("socket:[INODE]").
"""

from __future__ import annotations

import functools
import re
import socket
import sys
from collections.abc import Iterable
from typing import Literal, NamedTuple, Optional

from memdoor.procfs.errors import ParseError
from memdoor.vocabulary import MAX_DIGITS

Protocol = Literal["tcp", "udp"]

# include/net/tcp_states.h. UDP reuses the numbers: 01 for a connected socket,
# 07 (CLOSE) for an unconnected one, which ss prints as UNCONN.
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}


class Socket(NamedTuple):
    protocol: Protocol
    family: int
    state: str
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    tx_queue: int
    rx_queue: int
    inode: int

    @property
    def local(self) -> str:
        return format_endpoint(self.local_address, self.local_port)

    @property
    def remote(self) -> str:
        return format_endpoint(self.remote_address, self.remote_port)


def format_endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@functools.lru_cache(maxsize=4096)
def decode_address(hex_address: str) -> str:
    """Decode the kernel's address: 32-bit words in host byte order, hex-printed.

    IPv4 is one word, IPv6 four; each word's bytes must be swapped on a
    little-endian host. inet_ntop prints the RFC 5952 form exactly as ss does
    (::1, ::ffff:127.0.0.1). Cached: a table of thousands of loopback sockets
    repeats a handful of addresses.
    """
    if len(hex_address) not in (8, 32):
        raise ParseError(f"net: address {hex_address!r} is neither 8 nor 32 hex digits")
    try:
        raw = bytes.fromhex(hex_address)
    except ValueError as exc:
        raise ParseError(f"net: address {hex_address!r} is not hex") from exc
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


# Rows are matched after a newline (the header line never matches), which lets
# the regex engine jump between newlines instead of trying ^ everywhere.
_ROW = re.compile(
    r"\n *\d+: +([0-9A-Fa-f]+):([0-9A-Fa-f]{4}) +([0-9A-Fa-f]+):([0-9A-Fa-f]{4}) +"
    r"([0-9A-Fa-f]{2}) +([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8}) +\S+ +\S+ +\d+ +\d+ +(\d+)"
)


def parse_net_table(
    text: str, protocol: Protocol, family: int, wanted_inodes: Optional[set[int]] = None
) -> list[Socket]:
    """Parse one table, keeping only rows whose inode is wanted (all if None).

    Filtering while parsing matters: net/tcp holds the whole namespace's
    sockets, often thousands, of which a process owns a few. Rows that do not
    match the documented layout raise ParseError (blank ones too: the kernel
    writes none), except the header line, and
    so does text whose last row has no newline: a row cut inside its inode
    still matches, with a wrong inode.
    """
    if text and not text.endswith("\n"):
        raise ParseError(f"net/{protocol}: last row has no newline (read cut short)")
    matches = _ROW.findall("\n" + text)
    if len(matches) != max(text.count("\n") - 1, 0):
        raise ParseError(f"net/{protocol}{'6' if family == 6 else ''}: malformed row")
    expected_len = 8 if family == 4 else 32
    sockets = []
    for local_hex, local_port, remote_hex, remote_port, state, tx, rx, inode_text in matches:
        inode = int(inode_text)
        if wanted_inodes is not None and inode not in wanted_inodes:
            continue
        if len(local_hex) != expected_len or len(remote_hex) != expected_len:
            raise ParseError(f"net: address length does not match IPv{family}")
        state_number = int(state, 16)
        sockets.append(
            Socket(
                protocol,
                family,
                TCP_STATES.get(state_number, f"UNKNOWN_{state_number}"),
                decode_address(local_hex),
                int(local_port, 16),
                decode_address(remote_hex),
                int(remote_port, 16),
                int(tx, 16),
                int(rx, 16),
                inode,
            )
        )
    return sockets


# An fd link to a socket is "socket:[INODE]"; a link is never empty and a
# path never holds a NUL, so links joined by NUL are split unambiguously.
_SOCKET_LINK = re.compile(rf"(?:^|\0)socket:\[([0-9]{{1,{MAX_DIGITS}}})\](?=\0|$)")


def socket_inodes(links: Iterable[str]) -> set[int]:
    """Inodes of the fd link targets that are 'socket:[12345]'; any other link is not one.

    One pattern over all the links joined: a process with thousands of fds
    would otherwise cost a few Python calls per fd.
    """
    return set(map(int, _SOCKET_LINK.findall("\0".join(links))))
