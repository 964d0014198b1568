from __future__ import annotations

import sys
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.procfs.net import Protocol, Socket, decode_address, parse_net_table, socket_inodes
from memdoor.vocabulary import decimal
from tests.procfs.recorded import damaged, fuzz, prefixes, recorded_text, value_or_parse_error

# The kernel prints addresses as 32-bit words in host byte order; the recordings
# come from a little-endian host.
pytestmark = pytest.mark.skipif(
    sys.byteorder != "little", reason="recorded on a little-endian host"
)

TABLES: list[tuple[str, Protocol, int]] = [
    ("net_tcp", "tcp", 4),
    ("net_tcp6", "tcp", 6),
    ("net_udp", "udp", 4),
    ("net_udp6", "udp", 6),
]


def test_tcp_listen_backlog_and_established() -> None:
    sockets = parse_net_table(recorded_text("net_tcp"), "tcp", 4)
    assert len(sockets) == 6
    listener = sockets[0]
    # Two connections wait in the accept queue: rx_queue of a LISTEN row is the backlog.
    assert listener == Socket("tcp", 4, "LISTEN", "127.0.0.1", 0x8D7D, "0.0.0.0", 0, 0, 2, 9966)
    assert listener.local == "127.0.0.1:36221"
    assert listener.remote == "0.0.0.0:0"
    assert sockets[2] == Socket(
        "tcp", 4, "ESTABLISHED", "127.0.0.1", 0xD9CA, "127.0.0.1", 0xD00B, 0, 0, 11438
    )
    # Accepted-queue children have no file yet: inode 0.
    assert [s.inode for s in sockets] == [9966, 0, 11438, 0, 11432, 11433]


def test_tcp6_loopback_any_and_v4_mapped() -> None:
    sockets = parse_net_table(recorded_text("net_tcp6"), "tcp", 6)
    by_inode = {s.inode: s for s in sockets}
    assert by_inode[11437].local == "[::]:53259"
    assert by_inode[11437].state == "LISTEN"
    assert by_inode[11434].local_address == "::1"
    assert by_inode[11434].local == "[::1]:57439"
    # Five bytes sent by the peer and not read yet.
    assert by_inode[11436].rx_queue == 5
    assert by_inode[11436].remote == "[::1]:42658"
    # An IPv4 client of a dual-stack listener.
    assert by_inode[11439].local_address == "::ffff:127.0.0.1"
    assert by_inode[11439].remote == "[::ffff:127.0.0.1]:55754"
    assert all(s.family == 6 and s.protocol == "tcp" for s in sockets)


def test_udp_states() -> None:
    sockets = parse_net_table(recorded_text("net_udp"), "udp", 4)
    # 01 is a connected UDP socket, 07 (CLOSE) an unconnected one: ss calls it UNCONN.
    assert [(s.inode, s.state) for s in sockets] == [(11441, "ESTABLISHED"), (11440, "CLOSE")]
    # One unread datagram, counted with its buffer overhead.
    assert sockets[1].rx_queue == 0x340
    assert sockets[0].remote == "127.0.0.1:33651"


def test_udp6() -> None:
    (sock,) = parse_net_table(recorded_text("net_udp6"), "udp", 6)
    assert sock == Socket("udp", 6, "CLOSE", "::1", 0xBCAE, "::", 0, 0, 0, 11442)


def test_only_wanted_inodes_are_kept() -> None:
    sockets = parse_net_table(recorded_text("net_tcp"), "tcp", 4, {9966, 11433, 424242})
    assert [s.inode for s in sockets] == [9966, 11433]
    assert parse_net_table(recorded_text("net_tcp"), "tcp", 4, set()) == []


def test_unknown_state_is_named_not_dropped() -> None:
    text = recorded_text("net_udp").replace(" 07 ", " 1F ")
    assert parse_net_table(text, "udp", 4)[1].state == "UNKNOWN_31"


@pytest.mark.parametrize(
    ("hex_address", "expected"),
    [
        ("0100007F", "127.0.0.1"),
        ("00000000", "0.0.0.0"),
        ("0101A8C0", "192.168.1.1"),
        ("00000000000000000000000001000000", "::1"),
        ("00000000000000000000000000000000", "::"),
        ("0000000000000000FFFF00000100007F", "::ffff:127.0.0.1"),
        ("B80D0120000000000000000001000000", "2001:db8::1"),
    ],
)
def test_decode_address(hex_address: str, expected: str) -> None:
    assert decode_address(hex_address) == expected


@pytest.mark.parametrize("hex_address", ["", "0100007", "0100007F00", "0100007G", "+100007F"])
def test_decode_address_malformed(hex_address: str) -> None:
    with pytest.raises(ParseError):
        decode_address(hex_address)


@pytest.mark.parametrize(
    ("link", "inode"),
    [
        ("socket:[11438]", 11438),
        ("pipe:[11438]", None),
        ("/dev/null", None),
        ("socket:[]", None),
        ("socket:[12a]", None),
        ("socket:[-1]", None),
        ("socket:[\u00b2]", None),
        ("anon_inode:[eventfd]", None),
    ],
)
def test_socket_inode(link: str, inode: Optional[int]) -> None:
    assert socket_inodes([link]) == (set() if inode is None else {inode})


@given(st.lists(st.one_of(st.text(), st.integers(0).map("socket:[{}]".format))))
def test_socket_inodes_are_those_of_each_link_alone(links: list[str]) -> None:
    """Links joined for one pattern read as each link read alone (a link never holds
    a NUL, a path cannot)."""
    links = [link for link in links if "\0" not in link]
    expected = set()
    for link in links:
        if link.startswith("socket:[") and link.endswith("]"):
            inode = decimal(link[8:-1])
            if inode is not None:
                expected.add(inode)
    assert socket_inodes(links) == expected


def test_header_only_and_empty() -> None:
    header = recorded_text("net_tcp").splitlines(keepends=True)[0]
    assert parse_net_table(header, "tcp", 4) == []
    assert parse_net_table("", "tcp", 4) == []


@pytest.mark.parametrize(
    "garbage",
    [
        "garbage\n",
        "   9: 0100007F:8D7D 00000000:0000\n",
        "   9: 0100007F:8D7D 00000000:0000 0A 00000000:00000002 00:00000000 00000000 0 0 x 3\n",
        # An IPv6 address in the IPv4 table.
        "   9: 00000000000000000000000001000000:E05F 00000000000000000000000000000000:0000 0A "
        "00000000:00000000 00:00000000 00000000     0        0 11434 1 0000000028c2dab7\n",
    ],
)
def test_a_garbage_row_fails_the_table(garbage: str) -> None:
    text = recorded_text("net_tcp")
    with pytest.raises(ParseError):
        parse_net_table(text + garbage, "tcp", 4)


def test_a_v4_address_in_the_v6_table() -> None:
    text = recorded_text("net_udp").replace("udp", "udp6")
    with pytest.raises(ParseError):
        parse_net_table(text, "udp", 6)


@pytest.mark.parametrize(("name", "protocol", "family"), TABLES)
def test_every_cut_gives_parse_error_or_a_true_prefix(
    name: str, protocol: Protocol, family: int
) -> None:
    full = parse_net_table(recorded_text(name), protocol, family)
    for text in prefixes(recorded_text(name)):
        sockets = value_or_parse_error(
            lambda t: parse_net_table(t, protocol, family),
            text,
        )
        if sockets is not None:
            assert sockets == full[: len(sockets)], repr(text[-60:])


@fuzz
@given(st.text(), st.sampled_from([4, 6]))
def test_arbitrary_text(text: str, family: int) -> None:
    value_or_parse_error(lambda t: parse_net_table(t, "tcp", family), text)


@fuzz
@given(
    st.sampled_from(TABLES).flatmap(lambda t: st.tuples(st.just(t), damaged(recorded_text(t[0]))))
)
def test_damaged_recording(case: tuple[tuple[str, Protocol, int], str]) -> None:
    (_, protocol, family), text = case
    value_or_parse_error(lambda t: parse_net_table(t, protocol, family), text)
