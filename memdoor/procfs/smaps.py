"""Parse /proc/PID/smaps_rollup and /proc/PID/smaps.

smaps_rollup gives process totals (PSS, USS, swap) with one kernel walk. smaps
gives the same per mapping; reading it already costs the walk, so when the
per-mapping figures are wanted the totals are summed from it instead of also
reading smaps_rollup (proc-costs.md: don't read both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from memdoor.procfs.errors import ParseError
from memdoor.procfs.maps import HEADER, Mapping, check_complete, mapping_from_match


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
_RSS = re.compile(rb"^Rss:\s+(\d+) kB$", re.M)


def _sum_fields(data: bytes) -> MemoryRollup:
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


def parse_smaps_rollup(data: bytes) -> MemoryRollup:
    return _sum_fields(data)


def parse_smaps(data: bytes) -> tuple[list[Mapping], MemoryRollup]:
    """Return every mapping with its resident kB, and the process totals.

    The common case pairs the n-th header with the n-th Rss line (two regex
    passes). If the counts differ (a truncated read, an odd kernel) each
    mapping's block is searched on its own, and a mapping without an Rss line
    keeps rss_kb None rather than borrowing its neighbour's. A last line
    without its newline is refused, as in parse_maps.
    """
    check_complete(data, "smaps")
    headers = list(HEADER.finditer(data))
    if not headers and data.strip():
        raise ParseError("smaps: no mapping header found")
    rss_values = _RSS.findall(data)
    if len(rss_values) == len(headers):
        mappings = [mapping_from_match(h, int(r)) for h, r in zip(headers, rss_values)]
    else:
        mappings = []
        for index, header in enumerate(headers):
            block_end = headers[index + 1].start() if index + 1 < len(headers) else len(data)
            found = _RSS.search(data, header.end(), block_end)
            mappings.append(mapping_from_match(header, int(found.group(1)) if found else None))
    if not headers:
        return [], MemoryRollup(0, 0, 0, 0, 0, 0, 0, 0, 0)
    return mappings, _sum_fields(data)
