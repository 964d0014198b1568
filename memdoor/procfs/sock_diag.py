"""The netlink messages of an inet_diag socket dump (NETLINK_SOCK_DIAG), request and reply.

The kernel hands out a namespace's TCP or UDP sockets of one address family
as fixed binary records: for 2,000 loopback connections about a third of the
kernel time of formatting /proc/net/tcp and tcp6 as text, and a cheaper parse
(iproute2's ss reads them the same way). The figures are those of the
/proc/net tables (include/uapi/linux/inet_diag.h, net/ipv4/tcp_diag.c), with
one difference undone here: for a TCP listener the dump's send queue is the
backlog limit, where /proc/net prints 0 (nothing is ever sent on a listener).
Nothing here does I/O: replies come in as bytes, so recorded replies test the
parser exactly as the kernel's do.
"""

from __future__ import annotations

import socket
import struct
from typing import Optional

from memdoor.procfs.errors import ParseError
from memdoor.procfs.net import TCP_STATES, Protocol, Socket

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
# Every state a /proc/net table lists (include/net/tcp_states.h, 1 to 12). Bit
# 13, TCP_BOUND_INACTIVE (Linux 6.5+), would add TCP sockets that are bound but
# neither listen nor connect, which /proc/net never lists (the dump reports
# them as CLOSE): left out, so both paths give the same rows.
LISTED_STATES = sum(1 << state for state in TCP_STATES)
TCP_LISTEN = 10

# struct nlmsghdr: length, type, flags, sequence number, port id.
HEADER = struct.Struct("=IHHII")
# struct inet_diag_req_v2: family, protocol, extensions, pad, states, then the
# socket id (ports, addresses, interface, cookie), left zero for a dump.
REQUEST = struct.Struct("=BBBxI48x")
# struct inet_diag_msg: family, state, timer, retransmits; the socket id:
# source and destination port (network order), source and destination address
# (16 bytes each, IPv4 in the first 4), interface, cookie; then expires,
# receive queue, send queue, uid, inode.
MESSAGE = struct.Struct("=BBxx2H16s16s12xIIIII")
# A socket's message, header and body read in one call.
ROW = struct.Struct(HEADER.format + MESSAGE.format[1:])
_PROTOCOL_NUMBERS: dict[Protocol, int] = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP}
_ADDRESS_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}


class DumpRefused(Exception):
    """The kernel answered the dump with an error (errno): no diag module for
    the protocol (ENOENT), or none allowed (EPERM)."""

    def __init__(self, errno: int) -> None:
        super().__init__(f"sock_diag dump refused: errno {errno}")
        self.errno = errno


def dump_request(protocol: Protocol, family: int, sequence: int) -> bytes:
    """The request for every socket of protocol and family (4 or 6) in the namespace."""
    body = REQUEST.pack(_ADDRESS_FAMILIES[family], _PROTOCOL_NUMBERS[protocol], 0, LISTED_STATES)
    flags = NLM_F_REQUEST | NLM_F_DUMP
    return HEADER.pack(HEADER.size + len(body), SOCK_DIAG_BY_FAMILY, flags, sequence, 0) + body


class _Addresses(dict[bytes, str]):
    """Each address of one dump in text, worked out once: thousands of loopback
    sockets share a handful of addresses."""

    def __init__(self, family: int) -> None:
        super().__init__()
        self.family = family

    def __missing__(self, raw: bytes) -> str:
        if self.family == 4:
            text = socket.inet_ntop(socket.AF_INET, raw[:4])
        else:
            text = socket.inet_ntop(socket.AF_INET6, raw)
        self[raw] = text
        return text


class _StateNames(dict[int, str]):
    def __missing__(self, state: int) -> str:
        return f"UNKNOWN_{state}"


_STATE_NAMES = _StateNames(TCP_STATES)


def parse_dump_reply(
    data: bytes,
    protocol: Protocol,
    family: int,
    sequence: int,
    wanted_inodes: Optional[set[int]] = None,
) -> tuple[list[Socket], bool]:
    """One datagram of the reply -> the wanted sockets in it, and whether it ended the dump.

    A datagram holds whole messages. A message cut short, one of another
    family or of another request's sequence number, or of a type a dump does
    not send raise ParseError; an error message raises DumpRefused.
    Only the rows whose inode is wanted (all if None) are decoded: the dump
    lists the whole namespace, a process owns some of it.
    """
    sockets: list[Socket] = []
    address_family = _ADDRESS_FAMILIES[family]
    addresses = _Addresses(family)
    listener_send_queue = TCP_LISTEN if protocol == "tcp" else None
    ntohs = socket.ntohs
    new = tuple.__new__
    append = sockets.append
    unpack_row = ROW.unpack_from
    row_end = len(data) - ROW.size
    offset = 0
    # One unpack and one test per socket; anything else (the end of the dump,
    # an error, a short or foreign message) leaves the loop for _last_message.
    while offset <= row_end:
        (
            length,
            kind,
            _flags,
            seq,
            _port,
            msg_family,
            state,
            local_port,
            remote_port,
            local,
            remote,
            _expires,
            rx_queue,
            tx_queue,
            _uid,
            inode,
        ) = unpack_row(data, offset)
        if (
            kind != SOCK_DIAG_BY_FAMILY
            or seq != sequence
            or not ROW.size <= length <= len(data) - offset
            or msg_family != address_family
        ):
            break
        if wanted_inodes is None or inode in wanted_inodes:
            # tuple.__new__ rather than Socket(...): its Python-level __new__
            # was a fifth of the parse for 2,000 sockets.
            append(
                new(
                    Socket,
                    (
                        protocol,
                        family,
                        _STATE_NAMES[state],
                        addresses[local],
                        ntohs(local_port),
                        addresses[remote],
                        ntohs(remote_port),
                        0 if state == listener_send_queue else tx_queue,
                        rx_queue,
                        inode,
                    ),
                )
            )
        # Messages are padded to 4 bytes (NLMSG_ALIGN).
        offset += (length + 3) & ~3
    if offset >= len(data):
        return sockets, False
    return sockets, _last_message(data, offset, family, sequence)


def _last_message(data: bytes, offset: int, family: int, sequence: int) -> bool:
    """The message at offset, which is not a whole socket row of this dump: True
    for the end of the dump; ParseError or DumpRefused for anything else."""
    end = len(data)
    if end - offset < HEADER.size:
        raise ParseError(f"sock_diag: {end - offset} bytes left, not a message header")
    length, kind, _flags, seq, _port = HEADER.unpack_from(data, offset)
    if length < HEADER.size or offset + length > end:
        raise ParseError(f"sock_diag: message length {length} at {offset} does not fit")
    if seq != sequence:
        raise ParseError(f"sock_diag: sequence {seq} answers another request")
    if kind == NLMSG_DONE:
        return True
    if kind == NLMSG_ERROR:
        if length < HEADER.size + 4:
            raise ParseError("sock_diag: error message cut short")
        (error,) = struct.unpack_from("=i", data, offset + HEADER.size)
        raise DumpRefused(-error)
    if kind != SOCK_DIAG_BY_FAMILY or length < ROW.size:
        raise ParseError(f"sock_diag: message of type {kind}, length {length}")
    raise ParseError(f"sock_diag: family {data[offset + HEADER.size]} in a dump of IPv{family}")
