from __future__ import annotations

import struct
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.procfs.net import Protocol, Socket, parse_net_table
from memdoor.procfs.sock_diag import (
    HEADER,
    NLMSG_DONE,
    NLMSG_ERROR,
    DumpRefused,
    dump_request,
    parse_dump_reply,
)
from tests.procfs.recorded import fuzz, prefixes, recorded_bytes, recorded_text

# Recorded on a little-endian host: the netlink header is in host order.
pytestmark = pytest.mark.skipif(
    sys.byteorder != "little", reason="recorded on a little-endian host"
)

# The sequence number the recordings were asked with.
SEQUENCE = 7
DUMPS: list[tuple[str, Protocol, int]] = [
    ("tcp", "tcp", 4),
    ("tcp6", "tcp", 6),
    ("udp", "udp", 4),
    ("udp6", "udp", 6),
]


def parse(protocol: Protocol, family: int, data: bytes) -> tuple[list[Socket], bool]:
    return parse_dump_reply(data, protocol, family, SEQUENCE)


def by_inode(sockets: list[Socket]) -> list[Socket]:
    return sorted(sockets, key=lambda s: s.inode)


@pytest.mark.parametrize(("name", "protocol", "family"), DUMPS)
def test_the_dump_gives_the_rows_proc_net_gave(name: str, protocol: Protocol, family: int) -> None:
    """The same sockets read both ways a moment apart: every field agrees, the
    listener's send queue included (the dump's backlog limit is not kept)."""
    sockets, done = parse(protocol, family, recorded_bytes(f"sock_diag_{name}"))
    assert done
    from_text = parse_net_table(recorded_text(f"net_{name}_diag"), protocol, family)
    assert by_inode(sockets) == by_inode(from_text)
    assert sockets


def test_the_recorded_rows() -> None:
    tcp, _ = parse("tcp", 4, recorded_bytes("sock_diag_tcp"))
    rows = {s.inode: s for s in tcp}
    assert rows[2236990] == Socket(
        "tcp", 4, "LISTEN", "127.0.0.1", 48879, "0.0.0.0", 0, 0, 1, 2236990
    )
    assert rows[2236992].rx_queue == 300
    tcp6, _ = parse("tcp", 6, recorded_bytes("sock_diag_tcp6"))
    mapped = {s.inode: s for s in tcp6}[2236999]
    assert (mapped.local_address, mapped.remote_address) == ("::ffff:127.0.0.1", "::ffff:127.0.0.1")
    udp, _ = parse("udp", 4, recorded_bytes("sock_diag_udp"))
    assert {s.state for s in udp} == {"CLOSE"}
    udp6, _ = parse("udp", 6, recorded_bytes("sock_diag_udp6"))
    assert [(s.state, s.remote) for s in udp6] == [("ESTABLISHED", "[::1]:9")]


def test_only_wanted_inodes_are_kept() -> None:
    data = recorded_bytes("sock_diag_tcp")
    sockets, done = parse_dump_reply(data, "tcp", 4, SEQUENCE, {2236992, 1})
    assert done
    assert [s.inode for s in sockets] == [2236992]


@pytest.mark.parametrize(("name", "protocol", "family"), DUMPS)
def test_every_cut_gives_parse_error_or_a_true_prefix(
    name: str, protocol: Protocol, family: int
) -> None:
    """A datagram cut short is refused, or, cut between messages, is a prefix of
    the rows and does not claim to end the dump."""
    data = recorded_bytes(f"sock_diag_{name}")
    full, _ = parse(protocol, family, data)
    for cut in prefixes(data):
        try:
            sockets, done = parse(protocol, family, cut)
        except ParseError:
            continue
        assert not done
        assert sockets == full[: len(sockets)]


def test_a_reply_to_another_request_or_family_is_refused() -> None:
    data = recorded_bytes("sock_diag_tcp")
    with pytest.raises(ParseError, match="sequence"):
        parse_dump_reply(data, "tcp", 4, SEQUENCE + 1)
    with pytest.raises(ParseError, match="family"):
        parse_dump_reply(data, "tcp", 6, SEQUENCE)


def message(kind: int, payload: bytes, sequence: int = SEQUENCE) -> bytes:
    return HEADER.pack(HEADER.size + len(payload), kind, 0, sequence, 0) + payload


def test_an_error_message_says_the_errno() -> None:
    with pytest.raises(DumpRefused) as refused:
        parse_dump_reply(message(NLMSG_ERROR, struct.pack("=i", -2)), "udp", 4, SEQUENCE)
    assert refused.value.errno == 2
    with pytest.raises(ParseError, match="cut short"):
        parse_dump_reply(message(NLMSG_ERROR, b"\xfe\xff"), "udp", 4, SEQUENCE)


def test_the_end_of_a_dump_and_an_empty_datagram() -> None:
    assert parse_dump_reply(message(NLMSG_DONE, bytes(4)), "tcp", 4, SEQUENCE) == ([], True)
    assert parse_dump_reply(b"", "tcp", 4, SEQUENCE) == ([], False)


@pytest.mark.parametrize("kind", [1, 16, 21])
def test_a_message_a_dump_does_not_send_is_refused(kind: int) -> None:
    with pytest.raises(ParseError, match="type"):
        parse_dump_reply(message(kind, bytes(72)), "tcp", 4, SEQUENCE)


def test_the_request_is_the_kernels_layout() -> None:
    """struct nlmsghdr (16 bytes) + struct inet_diag_req_v2 (56): AF_INET6, IPPROTO_UDP,
    the states 1 to 12 (not 13, bound-inactive, which /proc/net does not list)."""
    request = dump_request("udp", 6, 42)
    assert len(request) == 72
    assert HEADER.unpack_from(request) == (72, 20, 0x301, 42, 0)
    assert request[16:24] == bytes([10, 17, 0, 0]) + (0x1FFE).to_bytes(4, sys.byteorder)
    assert request[24:] == bytes(48)


def outcome(data: bytes, protocol: Protocol, family: int) -> object:
    try:
        return parse_dump_reply(data, protocol, family, SEQUENCE)
    except (ParseError, DumpRefused) as refused:
        return refused


@fuzz
@given(st.binary(max_size=400), st.sampled_from(DUMPS))
def test_arbitrary_bytes(data: bytes, dump: tuple[str, Protocol, int]) -> None:
    outcome(data, dump[1], dump[2])


@fuzz
@given(st.sampled_from(DUMPS), st.data())
def test_damaged_recording(dump: tuple[str, Protocol, int], draw: st.DataObject) -> None:
    """Any span of a recorded reply replaced by any bytes: rows, ParseError or
    DumpRefused, never another exception."""
    data = recorded_bytes(f"sock_diag_{dump[0]}")
    start = draw.draw(st.integers(0, len(data)))
    end = draw.draw(st.integers(start, min(len(data), start + 40)))
    damaged = data[:start] + draw.draw(st.binary(max_size=40)) + data[end:]
    outcome(damaged, dump[1], dump[2])
