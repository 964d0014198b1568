"""The seed's text layout, checked against the example output in the seed's README.

The README lines below are copied verbatim (trailing blanks included) from the
seed tool's documentation, so existing readers of the report keep finding every
column where they always did.
"""

from __future__ import annotations

import calendar
import sys
import time
from collections.abc import Iterator
from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.collect.memory import MemoryFigures
from memdoor.collect.oom import OomScores
from memdoor.collect.reading import Unreadable
from memdoor.process_text import printable
from memdoor.procfs.maps import Mapping
from memdoor.procfs.net import Socket
from memdoor.render.seed_text import (
    CONNECTION_HEADER,
    MAPPING_HEADER,
    RESIDENT_MAPPING_HEADER,
    below_threshold_report,
    connection_line,
    connection_section,
    full_report,
    mapping_line,
    mapping_section_by_rss,
    memory_section,
    printable_lines,
    problem_section,
    report_time,
)
from memdoor.snapshot import take_snapshot
from tests.collect.trees import COMPLETE, MODERN

SEED_MAPPING_HEADER = "START ADDRESS     SIZE                PERM  DEV    INODE      FILE PATH"
SEED_MAPPING_LINES = [
    "000055e87e594000  4               kB  r--p  00:2e  330129     /home/ericlee/oom",
    "00007fda8ec5b000  67371008        kB  rw-p  00:00  0          ",
    "00007fea9ee3c000  128             kB  r-xp  00:2e  318320     "
    "/usr/lib/x86_64-linux-gnu/ld-2.31.so",
    "ffffffffff600000  4               kB  --xp  00:00  0          [vsyscall]",
]
SEED_CONNECTION_HEADER = (
    "PROT STATE        LOCAL ADDRESS         REMOTE ADDRESS        TX QUEUE    RX QUEUE    "
)
SEED_BELOW_THRESHOLD = (
    "Report Time: Sun Apr 28 22:44:24 2024\n"
    "##### PROCESS BASIC INFORMATION #####\n"
    "PID: 8893\n"
    "Executable Absolute Path: /home/ericlee/oom\n"
    "\n"
    "Process memory usage is not equal to or greater than input memory pressure threshold\n"
    "\n"
)
SEED_MEMORY_LINES = [
    "##### PROCESS MEMORY INFORMATION #####",
    "Total System Memory: 6790004 kB",
    "Process RSS Memory Usage: 3615104 kB",
    "Process PSS Memory Usage: 3615100 kB",
    "Process OOM Score: 1238",
    "Process OOM Score Adjustment Value: 0",
]
# 2024-04-28 22:44:24, the README's first report, as UTC.
SEED_EPOCH = calendar.timegm((2024, 4, 28, 22, 44, 24, 0, 0, 0))


@pytest.fixture
def timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set TZ for the test; report times are local time, as ctime(3) printed them."""

    def use(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    try:
        yield use
    finally:
        monkeypatch.undo()
        time.tzset()


def seed_mapping(line: str) -> Mapping:
    """A Mapping that the seed would have printed as this line."""
    start, size, _, perms, dev, inode, *path = line.split()
    start_address = int(start, 16)
    return Mapping(
        start_address,
        start_address + int(size) * 1024,
        perms,
        0,
        dev,
        int(inode),
        " ".join(path),
    )


def test_headers_are_the_seeds() -> None:
    assert MAPPING_HEADER == SEED_MAPPING_HEADER
    assert CONNECTION_HEADER == SEED_CONNECTION_HEADER


@pytest.mark.parametrize("line", SEED_MAPPING_LINES)
def test_mapping_line_matches_the_seed_byte_for_byte(line: str) -> None:
    assert mapping_line(seed_mapping(line)) == line


def test_mapping_columns_start_under_their_headers() -> None:
    """Each value starts where its header label does, in the seed's lines and in ours."""
    labels = ["START ADDRESS", "SIZE", "PERM", "DEV", "INODE", "FILE PATH"]
    starts = [MAPPING_HEADER.index(label) for label in labels]
    ours = mapping_line(
        Mapping(0x7F0000000000, 0x7F0000100000, "rw-p", 0, "fe:00", 123, "/usr/lib/x.so")
    )
    for line in [*SEED_MAPPING_LINES, ours]:
        start, size, _, perms, dev, inode, *path = line.split()
        for offset, value in zip(starts, [start, size, perms, dev, inode, " ".join(path)]):
            assert line[offset : offset + len(value)] == value, (line, value)
            assert offset == 0 or line[offset - 1] == " "


def test_seed_heap_size_is_no_longer_garbage() -> None:
    heap = Mapping(0x55E87FB51000, 0x55E8A3F67000, "rw-p", 0, "00:00", 0, "[heap]")
    assert mapping_line(heap) == (
        "000055e87fb51000  594008          kB  rw-p  00:00  0          [heap]"
    )


def test_connection_columns_start_under_their_headers() -> None:
    label_starts = [
        CONNECTION_HEADER.index(label)
        for label in ("PROT", "STATE", "LOCAL ADDRESS", "REMOTE ADDRESS", "TX QUEUE", "RX QUEUE")
    ]
    sockets = [
        Socket("tcp", 4, "ESTABLISHED", "255.255.255.255", 65535, "10.0.0.1", 80, 1, 2, 1),
        Socket("udp", 6, "CLOSE", "::1", 57439, "::", 0, 0, 832, 2),
        Socket("tcp", 4, "NEW_SYN_RECV", "127.0.0.1", 1, "127.0.0.1", 2, 12345678901, 0, 3),
    ]
    for sock in sockets:
        line = connection_line(sock)
        assert len(line) == len(CONNECTION_HEADER), line
        values = [
            sock.protocol.upper() + ("6" if sock.family == 6 else ""),
            sock.state,
            sock.local,
            sock.remote,
            str(sock.tx_queue),
            str(sock.rx_queue),
        ]
        for start, value in zip(label_starts, values):
            assert line[start : start + len(value)] == value, (line, value)
            assert start == 0 or line[start - 1] == " "


def test_long_ipv6_endpoints_widen_the_address_columns() -> None:
    longest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"
    sockets = [
        Socket("tcp", 4, "LISTEN", "127.0.0.1", 80, "0.0.0.0", 0, 0, 0, 1),
        Socket("tcp", 6, "ESTABLISHED", longest, 65535, "fe80::1", 443, 7, 9, 2),
    ]
    _title, header, *lines = connection_section(sockets)
    assert header.startswith("PROT STATE        LOCAL ADDRESS ")
    remote_at, tx_at = header.index("REMOTE ADDRESS"), header.index("TX QUEUE")
    assert remote_at - header.index("LOCAL ADDRESS") == len(f"[{longest}]:65535") + 1
    for line, sock in zip(lines, sockets):
        assert len(line) == len(header)
        assert line[remote_at : remote_at + len(sock.remote)] == sock.remote
        assert line[tx_at : tx_at + len(str(sock.tx_queue))] == str(sock.tx_queue)
        assert line[remote_at - 1] == " " and line[tx_at - 1] == " "


def test_ipv4_only_keeps_the_seeds_columns() -> None:
    sock = Socket("tcp", 4, "ESTABLISHED", "255.255.255.255", 65535, "10.0.0.1", 80, 1, 2, 1)
    assert connection_section([sock])[1:] == [SEED_CONNECTION_HEADER, connection_line(sock)]


def test_connection_line_content() -> None:
    sock = Socket("tcp", 6, "LISTEN", "::1", 57439, "::", 0, 0, 2, 11434)
    assert connection_line(sock) == (
        "TCP6 LISTEN       [::1]:57439           [::]:0                0           2           "
    )


def test_report_time_is_ctime_in_local_time(timezone: Callable[[str], None]) -> None:
    timezone("UTC0")
    assert report_time(SEED_EPOCH) == "Report Time: Sun Apr 28 22:44:24 2024"
    # Day of month padded with a blank, as ctime(3) does.
    first = calendar.timegm((2024, 4, 1, 9, 5, 3, 0, 0, 0))
    assert report_time(first) == "Report Time: Mon Apr  1 09:05:03 2024"
    timezone("XST-5:30")
    assert report_time(SEED_EPOCH) == "Report Time: Mon Apr 29 04:14:24 2024"


def test_below_threshold_report_is_the_seeds(timezone: Callable[[str], None]) -> None:
    timezone("UTC0")
    assert below_threshold_report(SEED_EPOCH, 8893, "/home/ericlee/oom") == SEED_BELOW_THRESHOLD


def test_memory_section_keeps_the_seeds_lines_in_order() -> None:
    memory = MemoryFigures(
        mem_total_kb=6790004,
        mem_available_kb=100,
        rss_kb=3615104,
        rss_anon_kb=None,
        rss_file_kb=None,
        rss_shmem_kb=None,
        pss_kb=3615100,
        uss_kb=None,
        swap_kb=None,
        page_tables_kb=None,
        rollup_source="smaps_rollup",
    )
    lines = memory_section(memory, OomScores(1238, 0))
    assert [line for line in lines if line in SEED_MEMORY_LINES] == SEED_MEMORY_LINES
    assert "Process RSS Anonymous: unavailable" in lines
    assert "Process Memory Usage Percentage: 53.24%" in lines


def test_memory_section_without_meminfo() -> None:
    memory = MemoryFigures(None, None, 3615104, None, None, None, None, None, None, None, None)
    lines = memory_section(memory, None)
    assert "Total System Memory: unavailable" in lines
    assert "Process RSS Memory Usage: 3615104 kB" in lines
    assert "Process Memory Usage Percentage: unavailable" in lines


def test_problem_lines() -> None:
    problems = [Unreadable("/proc/5/smaps", "denied", "Permission denied")]
    assert problem_section(problems)[1:] == ["/proc/5/smaps: denied (Permission denied)"]


@pytest.mark.skipif(sys.byteorder != "little", reason="the tree was recorded little-endian")
def test_full_report_of_the_recorded_process(timezone: Callable[[str], None]) -> None:
    timezone("UTC0")
    snapshot = take_snapshot(COMPLETE, proc=MODERN)
    snapshot.taken_at = SEED_EPOCH
    report = full_report(snapshot, "/usr/bin/sleep")
    blocks = report.split("\n\n")
    assert blocks[0].splitlines() == [
        "Report Time: Sun Apr 28 22:44:24 2024",
        "##### PROCESS BASIC INFORMATION #####",
        f"PID: {COMPLETE}",
        "Executable Absolute Path: /usr/bin/sleep",
    ]
    titles = [block.splitlines()[0] for block in blocks[1:] if block]
    assert titles == [
        "##### PROCESS MEMORY INFORMATION #####",
        "##### PROCESS TREE INFORMATION #####",
        "##### PROCESS MEMORY MAPPING INFORMATION #####",
        "##### PROCESS NETWORK CONNECTION INFORMATION #####",
    ]
    assert report.endswith("\n\n")
    mapping_block = blocks[3].splitlines()
    assert mapping_block[1] == SEED_MAPPING_HEADER
    assert mapping_block[2] == (
        "000055d7e29f7000  8               kB  r--p  fe:00  260875     /usr/bin/sleep"
    )
    assert len(mapping_block) == 2 + 24
    connection_block = blocks[4].splitlines()
    # Its longest endpoint, an IPv4-mapped IPv6 one, widens the seed's columns by 3.
    assert "[::ffff:127.0.0.1]:53259 [::ffff:127.0.0.1]:55754 0" in blocks[4]
    assert connection_block[1] == SEED_CONNECTION_HEADER.replace("ADDRESS  ", "ADDRESS     ")
    assert len(connection_block) == 2 + 12
    assert (
        "TCP  LISTEN       127.0.0.1:36221          0.0.0.0:0                "
        "0           2           " in connection_block
    )
    assert blocks[2].splitlines()[1:] == [
        "PID       NAME",
        "7340      sleep",
        "7338      python",
        "1         systemd",
    ]


def test_sort_rss_adds_a_resident_column_and_orders_by_it() -> None:
    """Largest resident first, unknown last, address order among equals; each value
    starts under its header label as in the seed's table."""
    mappings = [
        Mapping(0x1000, 0x3000, "r--p", 0, "fe:00", 7, "/usr/bin/app", 4),
        Mapping(0x5000, 0x105000, "rw-p", 0, "00:00", 0, "[heap]", 1020),
        Mapping(0x200000, 0x201000, "r-xp", 0, "fe:00", 9, "/lib/x.so", None),
        Mapping(0x0800, 0x1000, "rw-p", 0, "00:00", 0, "", 4),
    ]
    header, *rows = mapping_section_by_rss(mappings)[1:]
    assert header == RESIDENT_MAPPING_HEADER
    assert rows == [
        "0000000000005000  1024            kB  1020            kB  rw-p  00:00  0          [heap]",
        "0000000000000800  2               kB  4               kB  rw-p  00:00  0          ",
        "0000000000001000  8               kB  4               kB  r--p  fe:00  7          "
        "/usr/bin/app",
        "0000000000200000  4               kB  ?               kB  r-xp  fe:00  9          "
        "/lib/x.so",
    ]
    labels = ["START ADDRESS", "SIZE", "RESIDENT", "PERM", "DEV", "INODE", "FILE PATH"]
    starts = [header.index(label) for label in labels]
    for row in rows:
        start, size, _, resident, _, perms, dev, inode, *path = row.split()
        for offset, value in zip(starts, [start, size, resident, perms, dev, inode, *path]):
            assert row[offset : offset + len(value)] == value, (row, value)


def test_the_default_report_keeps_the_seeds_mapping_table(timezone: Callable[[str], None]) -> None:
    timezone("UTC0")
    snapshot = take_snapshot(COMPLETE, proc=MODERN)
    by_address = full_report(snapshot, "/usr/bin/sleep")
    assert by_address == full_report(snapshot, "/usr/bin/sleep", sort_by_rss=False)
    by_rss = full_report(snapshot, "/usr/bin/sleep", sort_by_rss=True)
    assert SEED_MAPPING_HEADER in by_address and RESIDENT_MAPPING_HEADER not in by_address
    assert RESIDENT_MAPPING_HEADER in by_rss
    # Everything but the mapping table is the same text.
    assert by_rss.split("\n\n")[:3] == by_address.split("\n\n")[:3]
    assert by_rss.split("\n\n")[4:] == by_address.split("\n\n")[4:]


@given(st.lists(st.text()))
def test_a_block_is_its_lines_each_made_printable(lines: list[str]) -> None:
    """The one-pass check over a block gives what printing each line alone gives."""
    assert printable_lines(lines) == "\n".join(printable(line) for line in lines)
