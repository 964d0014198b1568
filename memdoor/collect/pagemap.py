"""Mappings with their resident size from maps and one ioctl(PAGEMAP_SCAN), smaps where not.

The scan (Linux 6.7+) needs the ptrace read access smaps needs, and since
pagemap's mode is 0400, a reader that does not own the process also needs
CAP_DAC_READ_SEARCH: the systemd unit grants both (measured as a non-root
uid). No CAP_SYS_ADMIN: it reports page categories, never frame numbers.
Where it fails (ENOTTY before 6.7, EFAULT where a gate page above the user
address space is not maps' last line, EPERM, EACCES) or cannot tell (huge
pages in a file mapping), the smaps path reads the same figures, and the
snapshot's mappings_source says which path gave them.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
from collections.abc import Sequence
from typing import Literal, Optional, Union

from memdoor.collect.mappings import read_mappings
from memdoor.collect.reading import Unreadable, read_bytes, unreadable_from_oserror
from memdoor.procfs.errors import ParseError
from memdoor.procfs.mapping_table import collector_paused
from memdoor.procfs.maps import Mapping
from memdoor.procfs.pagemap import (
    PAGE_IS_HUGE,
    PAGE_IS_PFNZERO,
    PAGE_IS_PRESENT,
    REGION,
    Undecidable,
    parse_maps_with_resident,
)

MappingsSource = Literal["pagemap", "smaps", "maps"]
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Regions per ioctl (12 KiB): a process with 20,000 mappings and 300 MB resident
# had 70; one with more goes on from walk_end, where the vector filled.
VECTOR_REGIONS = 512
# Addresses from here up are the kernel's: the x86-64 [vsyscall] page that maps
# lists is not the process's, and a scan range reaching it fails with EFAULT.
KERNEL_HALF = 1 << 63


class _ScanArg(ctypes.Structure):
    """struct pm_scan_arg of include/uapi/linux/fs.h."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "size",
            "flags",
            "start",
            "end",
            "walk_end",
            "vec",
            "vec_len",
            "max_pages",
            "category_inverted",
            "category_mask",
            "category_anyof_mask",
            "return_mask",
        )
    ]


# _IOWR('f', 16, struct pm_scan_arg)
PAGEMAP_SCAN = (3 << 30) | (ctypes.sizeof(_ScanArg) << 16) | (ord("f") << 8) | 16


def scan_present(
    path: str, start: int, end: int, vector_regions: int = VECTOR_REGIONS
) -> Union[bytes, Unreadable]:
    """The page_region vector of present pages in [start, end), the zero page left out.

    A page mapped to the shared zero page (read, never written) is present in
    the page tables but is not the process's memory, and smaps does not count
    it: counted, it gave 391 MB against a VmRSS of 350 MB. So a page must not
    be PFNZERO (category_inverted + category_mask) and must be PRESENT.
    Swapped pages are not asked for: resident sizes are what a mapping shows.
    Huge pages are reported as such: in a file mapping they may be hugetlbfs,
    which smaps does not count as resident (see procfs.pagemap.Undecidable).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return unreadable_from_oserror(path, exc)
    vector = (ctypes.c_char * (vector_regions * REGION.size))()
    arg = _ScanArg(
        size=ctypes.sizeof(_ScanArg),
        start=start,
        end=end,
        vec=ctypes.addressof(vector),
        vec_len=vector_regions,
        category_inverted=PAGE_IS_PFNZERO,
        category_mask=PAGE_IS_PFNZERO | PAGE_IS_PRESENT,
        return_mask=PAGE_IS_PRESENT | PAGE_IS_HUGE,
    )
    chunks = []
    try:
        while True:
            count = fcntl.ioctl(fd, PAGEMAP_SCAN, arg)
            chunks.append(ctypes.string_at(vector, count * REGION.size))
            if arg.walk_end >= end:
                return b"".join(chunks)
            if arg.walk_end <= arg.start:
                return Unreadable(path, "error", f"PAGEMAP_SCAN stopped at {arg.walk_end:x}")
            arg.start = arg.walk_end
    except OSError as exc:
        return unreadable_from_oserror(path, exc)
    finally:
        os.close(fd)


def first_and_last_address(maps: bytes) -> tuple[int, int]:
    """From the first mapping's start to the end of the last one below the kernel's half.

    Read from the ends of the text: splitting 20,000 lines to find two costs more.
    """
    first = int(maps[: maps.index(b"-")], 16)
    line_end = len(maps) - 1
    while line_end > 0:
        line_start = maps.rfind(b"\n", 0, line_end) + 1
        end = int(maps[maps.index(b"-", line_start) + 1 : maps.index(b" ", line_start)], 16)
        if end < KERNEL_HALF:
            return first, end
        line_end = line_start - 1
    return first, first


def read_scanned_mappings(
    pid: int, proc: str = "/proc", rows: bool = True
) -> Optional[Sequence[Mapping]]:
    """Mappings and resident sizes by maps + PAGEMAP_SCAN (a MappingTable; unless
    rows, its rows are built when first asked for), None where that path fails.

    A failure is not a problem of the snapshot: the smaps path is tried next
    and reports its own. No mappings at all is treated as a failure too: a
    zombie group leader's maps is empty while its threads still run, and the
    smaps path knows where to look then.
    """
    maps = read_bytes(f"{proc}/{pid}/maps")
    if isinstance(maps, Unreadable) or not maps:
        return None
    try:
        start, end = first_and_last_address(maps)
    except ValueError:
        return None
    vector = scan_present(f"{proc}/{pid}/pagemap", start, end)
    if isinstance(vector, Unreadable):
        return None
    try:
        with collector_paused():
            return parse_maps_with_resident(maps, PAGE_SIZE, vector, rows)
    except (ParseError, Undecidable):
        return None


def read_smaps_mappings(
    pid: int, problems: list[Unreadable], proc: str = "/proc"
) -> tuple[Optional[Sequence[Mapping]], Optional[MappingsSource]]:
    """The path for kernels before 6.7: smaps, or maps alone (no resident sizes)."""
    mappings = read_mappings(pid, problems, proc)
    if mappings is None:
        return None, None
    if mappings and all(m.rss_kb is None for m in mappings):
        return mappings, "maps"
    return mappings, "smaps"


def read_resident_mappings(
    pid: int, problems: list[Unreadable], proc: str = "/proc", rows: bool = True
) -> tuple[Optional[Sequence[Mapping]], Optional[MappingsSource]]:
    """Every mapping with its resident kB, and the path that gave them; rows False
    leaves a MappingTable's rows to be built when first asked for (the smaps
    path builds them anyway)."""
    scanned = read_scanned_mappings(pid, proc, rows)
    if scanned is not None:
        return scanned, "pagemap"
    return read_smaps_mappings(pid, problems, proc)
