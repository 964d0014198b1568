"""Resident sizes by PAGEMAP_SCAN against smaps, on real processes; the fallbacks on fixtures."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from memdoor.collect.mappings import read_mappings
from memdoor.collect.pagemap import (
    PAGE_SIZE,
    first_and_last_address,
    read_resident_mappings,
    read_scanned_mappings,
    scan_present,
)
from memdoor.collect.reading import Unreadable, read_bytes
from memdoor.procfs.mapping_table import MappingTable
from memdoor.procfs.maps import Mapping, path_group
from memdoor.procfs.pagemap import REGION, parse_page_regions
from memdoor.render.summary import summarize_mappings
from memdoor.snapshot import take_snapshot
from memdoor.watch.evidence import mapping_signature
from tests.collect.trees import COMPLETE, MODERN, TRUNCATED_SMAPS
from tests.workload_fixture import SpawnWorkload

MIB = 1024 * 1024


def _kernel_has_pagemap_scan() -> bool:
    major, minor = (int(part) for part in platform.release().split(".")[:2])
    return (major, minor) >= (6, 7)


needs_pagemap_scan = pytest.mark.skipif(
    not _kernel_has_pagemap_scan(), reason="PAGEMAP_SCAN needs Linux 6.7+"
)


def by_group(mappings: Sequence[Mapping]) -> dict[tuple[str, str], int]:
    groups: dict[tuple[str, str], int] = {}
    for m in mappings:
        groups[path_group(m.path)] = groups.get(path_group(m.path), 0) + (m.rss_kb or 0)
    return groups


def within_one_percent(a: int, b: int) -> bool:
    return abs(a - b) <= max(a, b) / 100


def both_paths(pid: int) -> tuple[list[Mapping], list[Mapping]]:
    """The scan between two smaps reads that agree: the process held still meanwhile.

    A process just past its ready line may still touch a page of stack or
    heap; a page that arrives between the two paths' reads is not a
    disagreement between them, so such a round is read again.
    """
    for _ in range(20):
        problems: list[Unreadable] = []
        before = read_mappings(pid, problems)
        scanned = read_scanned_mappings(pid)
        after = read_mappings(pid, problems)
        assert problems == [] and scanned is not None and after is not None
        if before == after:
            return scanned, after
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} kept changing its mappings")


def assert_agree(scanned: list[Mapping], from_smaps: list[Mapping]) -> None:
    assert [m._replace(rss_kb=None) for m in scanned] == [
        m._replace(rss_kb=None) for m in from_smaps
    ]
    scanned_groups, smaps_groups = by_group(scanned), by_group(from_smaps)
    assert scanned_groups.keys() == smaps_groups.keys()
    for group, rss in smaps_groups.items():
        assert within_one_percent(scanned_groups[group], rss), group
    total = sum(smaps_groups.values())
    assert within_one_percent(sum(scanned_groups.values()), total)


@needs_pagemap_scan
def test_both_paths_agree_on_a_workload(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--touch-mb", 64, "--mappings", 2000, "--sockets")
    scanned, from_smaps = both_paths(workload.pid)
    assert len(scanned) >= 2000
    assert_agree(scanned, from_smaps)
    # The touched 64 MiB are resident on both paths.
    assert sum(m.rss_kb or 0 for m in scanned) >= 64 * 1024


# A child with one anonymous mapping of 32 MiB: every page read (so mapped to the
# shared zero page), the first 8 MiB then written. It prints the mapping's address.
_ZERO_PAGE_CHILD = """
import ctypes, mmap, sys
size, written = 32 << 20, 8 << 20
area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
area.madvise(mmap.MADV_NOHUGEPAGE)
sum(area[offset] for offset in range(0, size, mmap.PAGESIZE))
area[:written] = b"x" * written
print(ctypes.addressof(ctypes.c_char.from_buffer(area)), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def zero_page_child() -> Iterator[tuple[int, int]]:
    child = subprocess.Popen(
        [sys.executable, "-c", _ZERO_PAGE_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        address = int(child.stdout.readline())
        yield child.pid, address
    finally:
        child.kill()
        child.wait()


@needs_pagemap_scan
def test_pages_that_map_the_zero_page_are_not_resident(
    zero_page_child: tuple[int, int],
) -> None:
    pid, address = zero_page_child
    scanned, from_smaps = both_paths(pid)
    assert_agree(scanned, from_smaps)
    (area,) = [m for m in scanned if m.start == address]
    assert area.size_kb == 32 * 1024
    # Counted as present, the zero page would make all 32 MiB resident.
    assert within_one_percent(area.rss_kb or 0, 8 * 1024)


# A child whose 16 MiB anonymous mapping asks for transparent huge pages and is
# written all over, so the kernel can back it with 2 MiB pages.
_HUGE_PAGE_CHILD = """
import ctypes, mmap, sys
size = 16 << 20
area = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
area.madvise(mmap.MADV_HUGEPAGE)
area[:] = b"x" * size
print(ctypes.addressof(ctypes.c_char.from_buffer(area)), flush=True)
sys.stdin.read()
"""


def anon_huge_pages_kb(pid: int) -> int:
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    (line,) = [line for line in text.splitlines() if line.startswith("AnonHugePages:")]
    return int(line.split()[1])


@needs_pagemap_scan
def test_transparent_huge_pages_are_resident_on_both_paths() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _HUGE_PAGE_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        int(child.stdout.readline())
        if not anon_huge_pages_kb(child.pid):
            pytest.skip("the kernel gave the child no transparent huge page")
        scanned, from_smaps = both_paths(child.pid)
        assert_agree(scanned, from_smaps)
    finally:
        child.kill()
        child.wait()


# A child with 4 MiB of hugetlb memory (MAP_HUGETLB, 0x40000 on x86 and arm64),
# written all over: present huge pages that smaps leaves out of Rss.
_HUGETLB_CHILD = """
import mmap, sys
size = 4 << 20
flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_HUGETLB", 0x40000)
area = mmap.mmap(-1, size, flags=flags)
area[:] = b"x" * size
print("ready", flush=True)
sys.stdin.read()
"""
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")


@pytest.fixture
def hugetlb_child() -> Iterator[int]:
    """The child above, with two 2 MiB pages reserved for it meanwhile and given back after."""
    reserved = int(NR_HUGEPAGES.read_text())
    NR_HUGEPAGES.write_text(f"{reserved + 2}\n")
    child = subprocess.Popen(
        [sys.executable, "-c", _HUGETLB_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline() != b"ready\n":
            pytest.skip("no hugetlb pages for the child (reservation refused)")
        yield child.pid
    finally:
        child.kill()
        child.wait()
        NR_HUGEPAGES.write_text(f"{reserved}\n")


@needs_pagemap_scan
@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="MAP_HUGETLB value")
def test_hugetlb_pages_are_left_to_smaps(hugetlb_child: int) -> None:
    """smaps leaves hugetlb pages out of Rss; the scan cannot tell them from a file's
    transparent huge pages, so that process's mappings come from smaps."""
    assert read_scanned_mappings(hugetlb_child) is None
    problems: list[Unreadable] = []
    mappings, source = read_resident_mappings(hugetlb_child, problems)
    assert (source, problems) == ("smaps", [])
    (area,) = [m for m in mappings or [] if m.path.startswith("/anon_hugepage")]
    assert (area.size_kb, area.rss_kb) == (4096, 0)


@needs_pagemap_scan
def test_a_scan_whose_vector_fills_goes_on_where_it_stopped(spawn_workload: SpawnWorkload) -> None:
    """One region per ioctl: every region is a call of its own, resumed from walk_end."""
    workload = spawn_workload("--touch-mb", 8, "--mappings", 200)
    maps = read_bytes(f"/proc/{workload.pid}/maps")
    assert isinstance(maps, bytes)
    start, end = first_and_last_address(maps)
    path = f"/proc/{workload.pid}/pagemap"
    # Stopped, so that its interpreter cannot touch or free a page between the scans.
    os.kill(workload.pid, signal.SIGSTOP)
    try:
        whole, one_by_one = scan_present(path, start, end), scan_present(path, start, end, 1)
    finally:
        os.kill(workload.pid, signal.SIGCONT)
    assert isinstance(whole, bytes) and isinstance(one_by_one, bytes)
    assert len(whole) // REGION.size > 10

    def pages(vector: bytes) -> set[int]:
        return {
            page
            for first, last in parse_page_regions(vector, PAGE_SIZE)[0]
            for page in range(first, last, PAGE_SIZE)
        }

    assert pages(one_by_one) == pages(whole)


@needs_pagemap_scan
def test_a_snapshot_says_its_mappings_came_from_pagemap(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--touch-mb", 8)
    snapshot = take_snapshot(workload.pid, sections=["mappings"])
    assert snapshot.mappings_source == "pagemap" and snapshot.problems == []
    assert snapshot.mappings and all(m.rss_kb is not None for m in snapshot.mappings)


@needs_pagemap_scan
def test_a_summary_without_rows_is_the_summary_of_the_rows(spawn_workload: SpawnWorkload) -> None:
    """Under detail "summary" the snapshot's mappings stay columns: the groups and the
    change signature read from them are those of the rows built from the same text."""
    workload = spawn_workload("--touch-mb", 16, "--mappings", 500)
    snapshot = take_snapshot(workload.pid, sections=["mappings"], mapping_rows=False)
    columns = snapshot.mappings
    assert isinstance(columns, MappingTable) and len(columns) >= 500
    summary, signature = summarize_mappings(columns, 10), mapping_signature(columns)
    rows = columns.rows()
    assert summarize_mappings(rows, 10) == summary
    assert mapping_signature(rows) == signature
    assert sum(columns.rss_kb) >= 16 * 1024


def test_without_pagemap_smaps_gives_the_sizes_and_no_problem() -> None:
    problems: list[Unreadable] = []
    mappings, source = read_resident_mappings(COMPLETE, problems, MODERN)
    assert (source, problems) == ("smaps", [])
    assert mappings is not None and sum(m.rss_kb or 0 for m in mappings) == 1504


def test_a_pagemap_without_the_ioctl_falls_back_to_smaps(tmp_path: Path) -> None:
    """A regular file answers the ioctl with ENOTTY, as a kernel before 6.7 does."""
    shutil.copytree(f"{MODERN}/{COMPLETE}", tmp_path / str(COMPLETE), symlinks=True)
    (tmp_path / str(COMPLETE) / "pagemap").write_bytes(b"\0" * 4096)
    problems: list[Unreadable] = []
    mappings, source = read_resident_mappings(COMPLETE, problems, str(tmp_path))
    assert (source, problems) == ("smaps", [])
    assert mappings is not None and sum(m.rss_kb or 0 for m in mappings) == 1504


def test_maps_alone_is_said_so() -> None:
    problems: list[Unreadable] = []
    mappings, source = read_resident_mappings(TRUNCATED_SMAPS, problems, MODERN)
    assert source == "maps" and [p.reason for p in problems] == ["malformed"]
    assert mappings and all(m.rss_kb is None for m in mappings)


def test_nothing_readable_is_no_source() -> None:
    problems: list[Unreadable] = []
    assert read_resident_mappings(999999, problems, MODERN) == (None, None)
    assert [p.reason for p in problems] == ["vanished"]


def test_an_empty_maps_is_left_to_the_smaps_path(tmp_path: Path) -> None:
    """A zombie group leader's maps is empty while its threads run on."""
    shutil.copytree(f"{MODERN}/{COMPLETE}", tmp_path / str(COMPLETE), symlinks=True)
    (tmp_path / str(COMPLETE) / "maps").write_bytes(b"")
    assert read_scanned_mappings(COMPLETE, str(tmp_path)) is None
    mappings, source = read_resident_mappings(COMPLETE, [], str(tmp_path))
    assert source == "smaps" and mappings is not None and len(mappings) == 24


# The main thread leaves by the exit system call (not exit_group) while another
# thread runs on: the group leader becomes a zombie with the process alive.
_ZOMBIE_LEADER_CHILD = """
import ctypes, platform, sys, threading
threading.Thread(target=sys.stdin.read).start()
print("ready", flush=True)
ctypes.CDLL(None).syscall({"x86_64": 60, "aarch64": 93}[platform.machine()], 0)
"""


@needs_pagemap_scan
@pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="exit syscall number")
def test_a_zombie_leaders_empty_maps_is_not_taken_for_no_mappings() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _ZOMBIE_LEADER_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/maps").read_bytes():
            assert time.monotonic() < deadline, "the leader never left"
            time.sleep(0.01)
        assert len(os.listdir(f"/proc/{child.pid}/task")) == 2
        assert read_scanned_mappings(child.pid) is None
    finally:
        child.kill()
        child.wait()
