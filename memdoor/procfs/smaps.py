"""Parse /proc/PID/smaps_rollup and /proc/PID/smaps.

smaps_rollup gives process totals (PSS, USS, swap) with one kernel walk; smaps
gives every mapping's figures. proc-costs.md suggests summing smaps instead of
also reading smaps_rollup, but measured here the other way round is cheaper:
summing a dozen fields over 14 MB of smaps in Python costs more (~60 ms) than
the kernel's extra walk for smaps_rollup (~2-9 ms), so totals come from
smaps_rollup and smaps is parsed only for the per-mapping resident sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from memdoor.procfs.errors import ParseError
from memdoor.procfs.maps import (
    HEADER,
    HEADER_BODY,
    Mapping,
    Names,
    check_complete,
    mapping_from_match,
)


@dataclass(frozen=True)
class MemoryRollup:
    """Process-wide totals in kB. The Pss_* split exists only in smaps_rollup on Linux >= 5.5."""

    rss_kb: int
    pss_kb: int
    shared_clean_kb: int
    shared_dirty_kb: int
    private_clean_kb: int
    private_dirty_kb: int
    private_hugetlb_kb: int
    swap_kb: int
    swap_pss_kb: int
    pss_anon_kb: Optional[int] = None
    pss_file_kb: Optional[int] = None
    pss_shmem_kb: Optional[int] = None

    @property
    def uss_kb(self) -> int:
        """Unique set size: what would be freed if this process alone exited."""
        return self.private_clean_kb + self.private_dirty_kb + self.private_hugetlb_kb


_ROLLUP_KEYS = {
    b"Rss": "rss_kb",
    b"Pss": "pss_kb",
    b"Shared_Clean": "shared_clean_kb",
    b"Shared_Dirty": "shared_dirty_kb",
    b"Private_Clean": "private_clean_kb",
    b"Private_Dirty": "private_dirty_kb",
    b"Private_Hugetlb": "private_hugetlb_kb",
    b"Swap": "swap_kb",
    b"SwapPss": "swap_pss_kb",
    b"Pss_Anon": "pss_anon_kb",
    b"Pss_File": "pss_file_kb",
    b"Pss_Shmem": "pss_shmem_kb",
}
_OPTIONAL = {"pss_anon_kb", "pss_file_kb", "pss_shmem_kb", "private_hugetlb_kb", "swap_pss_kb"}
_FIELD = re.compile(
    rb"^(" + b"|".join(re.escape(k) for k in _ROLLUP_KEYS) + rb"):\s+(\d+) kB$",
    re.M,
)
_RSS = re.compile(rb"\nRss: +(\d+) kB(?=\n)")
# A mapping's header and its Rss line in one match: Size, KernelPageSize and
# MMUPageSize have preceded Rss in every kernel since 2.6.29.
_HEADER_AND_RSS = (
    HEADER_BODY
    + rb"\nSize: +\d+ kB\nKernelPageSize: +\d+ kB\nMMUPageSize: +\d+ kB\nRss: +(\d+) kB(?=\n)"
)
_FIRST_BLOCK = re.compile(_HEADER_AND_RSS)
# Every later block starts right after the VmFlags line that ends the one
# before (3.8+), so the search jumps from VmFlags to VmFlags, about 20,000
# places in a 14 MB smaps, instead of trying each of its 500,000 lines.
# Anything else after a VmFlags line lands in group 9.
_NEXT_BLOCKS = re.compile(rb"\nVmFlags:[^\n]*\n(?:" + _HEADER_AND_RSS + rb"|([\s\S]))")


def parse_smaps_rollup(data: bytes) -> MemoryRollup:
    """Totals from smaps_rollup, or summed over a whole smaps on kernels without rollup."""
    check_complete(data, "smaps")
    totals: dict[str, int] = {}
    for key, value in _FIELD.findall(data):
        attr = _ROLLUP_KEYS[key]
        totals[attr] = totals.get(attr, 0) + int(value)
    missing = [
        attr for attr in _ROLLUP_KEYS.values() if attr not in totals and attr not in _OPTIONAL
    ]
    if missing:
        raise ParseError(f"smaps: missing {', '.join(sorted(missing))}")
    totals.setdefault("private_hugetlb_kb", 0)
    totals.setdefault("swap_pss_kb", 0)
    return MemoryRollup(**totals)


def parse_smaps(data: bytes) -> list[Mapping]:
    """Every mapping with its resident kB.

    The fast path matches each header together with its Rss line, block after
    block. It is trusted only when the first block is complete, the last line
    is a VmFlags line (the text was not cut inside a block), and every other
    VmFlags line is followed by a complete header and Rss; a block without
    its VmFlags line, which no kernel writes, is all it cannot notice.
    Otherwise (a truncated read, a kernel before 3.8, an odd one) each
    mapping's block is searched on its own, and a mapping without an Rss line
    keeps rss_kb None rather than borrowing its neighbour's. A last line
    without its newline is refused, as in parse_maps.
    """
    check_complete(data, "smaps")
    names = Names()
    first = _FIRST_BLOCK.match(data)
    last_line = data.rfind(b"\n", 0, len(data) - 1) + 1
    if first and data.startswith(b"VmFlags:", last_line):
        blocks = [(*first.groups(b""), b"")]
        blocks += _NEXT_BLOCKS.findall(data)
        if not any(block[8] for block in blocks):
            # Inlined rather than calling mapping_from_groups, and built with
            # tuple.__new__ rather than Mapping(...): for 20,000 mappings the
            # calls were a third of the parse.
            new = tuple.__new__
            return [
                new(
                    Mapping,
                    (
                        int(start, 16),
                        int(end, 16),
                        names[perms],
                        int(offset, 16),
                        names[dev],
                        int(inode),
                        names[path],
                        int(rss),
                    ),
                )
                for start, end, perms, offset, dev, inode, path, rss, _ in blocks
            ]
    text = b"\n" + data
    headers = list(HEADER.finditer(text))
    if not headers and data.strip():
        raise ParseError("smaps: no mapping header found")
    mappings = []
    for index, header in enumerate(headers):
        block_end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        found = _RSS.search(text, header.end(), block_end)
        mappings.append(mapping_from_match(header, names, int(found.group(1)) if found else None))
    return mappings
