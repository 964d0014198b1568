"""Memory figures of one process against the system.

Two costs matter: the per-tick poll must stay a single small read (statm), while
the full figures need smaps_rollup, which walks every mapping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

from memdoor.collect.reading import Unreadable, malformed, read_bytes, read_parsed
from memdoor.procfs.errors import ParseError
from memdoor.procfs.meminfo import MemInfo, parse_meminfo
from memdoor.procfs.smaps import MemoryRollup, parse_smaps_rollup
from memdoor.procfs.statm import parse_statm_resident_pages
from memdoor.procfs.status import ProcStatus, parse_status
from memdoor.vocabulary import percent_of

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass(frozen=True)
class MemoryFigures:
    """All sizes in kB. Figures a file could not give stay None; the snapshot says why.

    The system's figures come from /proc/meminfo and the process's from its own
    files: either side can fail alone, and the other is still worth reporting.
    """

    mem_total_kb: Optional[int]
    mem_available_kb: Optional[int]
    rss_kb: Optional[int]
    rss_anon_kb: Optional[int]
    rss_file_kb: Optional[int]
    rss_shmem_kb: Optional[int]
    pss_kb: Optional[int]
    uss_kb: Optional[int]
    swap_kb: Optional[int]
    page_tables_kb: Optional[int]
    rollup_source: Optional[str]

    @property
    def usage_percent(self) -> Optional[float]:
        """The seed's rule: RSS / MemTotal * 100."""
        if self.rss_kb is None or self.mem_total_kb is None:
            return None
        return percent_of(self.rss_kb, self.mem_total_kb)


def read_meminfo(proc: str = "/proc") -> Union[MemInfo, Unreadable]:
    return read_parsed(f"{proc}/meminfo", parse_meminfo)


def read_rss_kb(pid: int, proc: str = "/proc") -> Union[int, Unreadable]:
    """The poll: one 28-byte read, independent of how many mappings the process has."""
    pages = read_parsed(f"{proc}/{pid}/statm", parse_statm_resident_pages)
    return pages if isinstance(pages, Unreadable) else pages * PAGE_KB


def read_status(pid: int, proc: str = "/proc") -> Union[ProcStatus, Unreadable]:
    return read_parsed(f"{proc}/{pid}/status", parse_status)


def read_rollup(pid: int, proc: str = "/proc") -> Union[tuple[MemoryRollup, str], Unreadable]:
    """Totals from smaps_rollup, or summed from smaps on kernels before 4.14 that lack it."""
    path = f"{proc}/{pid}/smaps_rollup"
    data = read_bytes(path)
    source = "smaps_rollup"
    if (
        isinstance(data, Unreadable)
        and data.reason == "vanished"
        and os.path.exists(f"{proc}/{pid}/smaps")
    ):
        path, source = f"{proc}/{pid}/smaps", "smaps"
        data = read_bytes(path)
    if isinstance(data, Unreadable):
        return data
    try:
        rollup = parse_smaps_rollup(data)
    except ParseError as exc:
        return malformed(path, str(exc))
    return rollup, source


def build_memory_figures(
    meminfo: Optional[MemInfo],
    status: Optional[ProcStatus],
    rollup: Optional[MemoryRollup],
    rollup_source: Optional[str],
) -> MemoryFigures:
    """Combine what could be read; RSS comes from status, as the seed's threshold rule does."""
    return MemoryFigures(
        mem_total_kb=meminfo.total_kb if meminfo else None,
        mem_available_kb=meminfo.available_kb if meminfo else None,
        rss_kb=status.vm_rss_kb if status else None,
        rss_anon_kb=status.rss_anon_kb if status else None,
        rss_file_kb=status.rss_file_kb if status else None,
        rss_shmem_kb=status.rss_shmem_kb if status else None,
        pss_kb=rollup.pss_kb if rollup else None,
        uss_kb=rollup.uss_kb if rollup else None,
        swap_kb=status.vm_swap_kb if status else (rollup.swap_kb if rollup else None),
        page_tables_kb=status.vm_pte_kb if status else None,
        rollup_source=rollup_source if rollup else None,
    )
