"""The seed tool's human report, byte for byte where the seed was right.

Column widths follow the seed's printf formats so existing readers (and eyes)
keep working; sections the seed grew later (USS, page tables, process tree,
IPv6, unreadable files) are added in the same style.

Names and paths come from the watched process, which can put a newline and a
forged "ERROR: PID 1 ..." line in its name, or a sequence that clears the
terminal. Every line goes out through
memdoor.process_text.printable: one line each, control characters escaped.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Optional

from memdoor.collect.cgroup import CgroupFigures
from memdoor.collect.memory import MemoryFigures
from memdoor.collect.oom import OomScores
from memdoor.collect.reading import Unreadable
from memdoor.collect.tree import Ancestor
from memdoor.process_text import printable
from memdoor.procfs.maps import Mapping
from memdoor.procfs.net import Socket
from memdoor.snapshot import Snapshot

BELOW_THRESHOLD = (
    "Process memory usage is not equal to or greater than input memory pressure threshold"
)
MAPPING_HEADER = "START ADDRESS     SIZE                PERM  DEV    INODE      FILE PATH"
# The seed's address columns fit "255.255.255.255:65535"; IPv6 endpoints run to
# 47 characters, so a section with longer ones widens both columns to fit.
ADDRESS_WIDTH = 21


def connection_header(address_width: int = ADDRESS_WIDTH) -> str:
    return (
        f"PROT STATE        {'LOCAL ADDRESS':<{address_width}} "
        f"{'REMOTE ADDRESS':<{address_width}} TX QUEUE    RX QUEUE    "
    )


CONNECTION_HEADER = connection_header()


def report_time(epoch: float) -> str:
    """ctime(3) layout in local time, as the seed printed it."""
    return f"Report Time: {time.asctime(time.localtime(epoch))}"


def basic_section(pid: int, exe: str) -> list[str]:
    return [
        "##### PROCESS BASIC INFORMATION #####",
        f"PID: {pid}",
        f"Executable Absolute Path: {exe}",
    ]


def _kb(value: Optional[int]) -> str:
    return "unavailable" if value is None else f"{value} kB"


def memory_section(memory: Optional[MemoryFigures], oom: Optional[OomScores]) -> list[str]:
    lines = ["##### PROCESS MEMORY INFORMATION #####"]
    if memory is not None:
        percent = memory.usage_percent
        lines += [
            f"Total System Memory: {_kb(memory.mem_total_kb)}",
            f"Available System Memory: {_kb(memory.mem_available_kb)}",
            f"Process RSS Memory Usage: {_kb(memory.rss_kb)}",
            f"Process RSS Anonymous: {_kb(memory.rss_anon_kb)}",
            f"Process RSS File: {_kb(memory.rss_file_kb)}",
            f"Process RSS Shared Memory: {_kb(memory.rss_shmem_kb)}",
            f"Process PSS Memory Usage: {_kb(memory.pss_kb)}",
            f"Process USS Memory Usage: {_kb(memory.uss_kb)}",
            f"Process Swap Usage: {_kb(memory.swap_kb)}",
            f"Process Page Table Size: {_kb(memory.page_tables_kb)}",
            "Process Memory Usage Percentage: "
            + ("unavailable" if percent is None else f"{percent:.2f}%"),
        ]
    if oom is not None:
        lines += [
            f"Process OOM Score: {'unavailable' if oom.score is None else oom.score}",
            "Process OOM Score Adjustment Value: "
            + ("unavailable" if oom.score_adj is None else str(oom.score_adj)),
        ]
    return lines


def _bytes_as_kb(value: Optional[int]) -> str:
    return _kb(None if value is None else value // 1024)


def cgroup_section(cgroup: CgroupFigures) -> list[str]:
    kb = _bytes_as_kb
    if cgroup.limit_bytes is None:
        limit = "unlimited"
    else:
        limit = f"{kb(cgroup.limit_bytes)} (set on {cgroup.limit_path})"
    percent = cgroup.usage_percent
    return [
        "##### PROCESS CGROUP MEMORY INFORMATION #####",
        f"Cgroup Path: {cgroup.place.path} (v{cgroup.place.version})",
        f"Cgroup Memory Usage: {kb(cgroup.usage_bytes)}",
        f"Cgroup Memory Limit: {limit}",
        "Cgroup Memory Usage Percentage: "
        + ("unavailable" if percent is None else f"{percent:.2f}%"),
        f"Cgroup OOM Kills: {cgroup.oom_counters.get('oom_kill', 'unavailable')}",
    ]


def tree_section(pid: int, name: str, ancestors: Iterable[Ancestor]) -> list[str]:
    lines = ["##### PROCESS TREE INFORMATION #####", f"{'PID':<10}NAME", f"{pid:<10}{name}"]
    lines += [f"{a.pid:<10}{a.name}" for a in ancestors]
    return lines


# printf-style: for 20,000 rows, % with plain locals takes half the time of an
# f-string reading each Mapping's attributes and its size_kb property.
_MAPPING_ROW = "%016x  %-16dkB  %s  %-5s  %-10d %s"


def mapping_line(m: Mapping) -> str:
    return _MAPPING_ROW % (m.start, m.size_kb, m.perms, m.dev, m.inode, m.path)


def mapping_section(mappings: Iterable[Mapping]) -> list[str]:
    row = _MAPPING_ROW
    lines = ["##### PROCESS MEMORY MAPPING INFORMATION #####", MAPPING_HEADER]
    lines += [row % (m[0], (m[1] - m[0]) // 1024, m[2], m[4], m[5], m[6]) for m in mappings]
    return lines


# `--sort rss`: the seed's columns with RESIDENT after SIZE, largest resident first,
# so the region that holds the memory is on the first row, not the 7th of 131.
RESIDENT_MAPPING_HEADER = (
    "START ADDRESS     SIZE                RESIDENT            PERM  DEV    INODE      FILE PATH"
)
_RESIDENT_ROW = "%016x  %-16dkB  %-16skB  %s  %-5s  %-10d %s"


def _resident_first(m: Mapping) -> tuple[int, int]:
    """Largest resident size first; unknown after every known one; then by address."""
    return (-1 if m.rss_kb is None else -m.rss_kb, m.start)


def mapping_section_by_rss(mappings: Iterable[Mapping]) -> list[str]:
    lines = ["##### PROCESS MEMORY MAPPING INFORMATION #####", RESIDENT_MAPPING_HEADER]
    lines += [
        _RESIDENT_ROW
        % (
            m.start,
            m.size_kb,
            "?" if m.rss_kb is None else m.rss_kb,
            m.perms,
            m.dev,
            m.inode,
            m.path,
        )
        for m in sorted(mappings, key=_resident_first)
    ]
    return lines


def connection_line(s: Socket, address_width: int = ADDRESS_WIDTH) -> str:
    return (
        f"{s.protocol.upper() + ('6' if s.family == 6 else ''):<4} {s.state:<12} "
        f"{s.local:<{address_width}} {s.remote:<{address_width}} "
        f"{s.tx_queue:<11} {s.rx_queue:<11} "
    )


def connection_section(connections: Iterable[Socket]) -> list[str]:
    sockets = list(connections)
    width = max([ADDRESS_WIDTH] + [len(end) for s in sockets for end in (s.local, s.remote)])
    lines = ["##### PROCESS NETWORK CONNECTION INFORMATION #####", connection_header(width)]
    lines += [connection_line(s, width) for s in sockets]
    return lines


def problem_section(problems: Iterable[Unreadable]) -> list[str]:
    return ["##### UNREADABLE INFORMATION #####"] + [
        f"{p.what}: {p.reason} ({p.detail})" for p in problems
    ]


def printable_lines(lines: Iterable[str]) -> str:
    """The lines, each made printable. printable escapes character by character,
    so lines whose concatenation it leaves alone need none: one pass over
    20,000 mapping rows instead of a call per row (a third of the report)."""
    lines = list(lines)
    whole = "".join(lines)
    if printable(whole) == whole:
        return "\n".join(lines)
    return "\n".join(printable(line) for line in lines)


def below_threshold_report(epoch: float, pid: int, exe: str) -> str:
    return printable_lines(
        [report_time(epoch), *basic_section(pid, exe), "", BELOW_THRESHOLD, "", ""]
    )


def full_report(snapshot: Snapshot, exe: str, sort_by_rss: bool = False) -> str:
    """Every collected section, each followed by a blank line as the seed did; the
    mappings in address order as the seed listed them, or by resident size."""
    blocks = [[report_time(snapshot.taken_at), *basic_section(snapshot.pid, exe)]]
    if snapshot.memory is not None or snapshot.oom is not None:
        blocks.append(memory_section(snapshot.memory, snapshot.oom))
    if snapshot.cgroup is not None:
        blocks.append(cgroup_section(snapshot.cgroup))
    if snapshot.tree is not None and snapshot.identity is not None:
        blocks.append(tree_section(snapshot.pid, snapshot.identity.name, snapshot.tree))
    if snapshot.mappings is not None:
        by = mapping_section_by_rss if sort_by_rss else mapping_section
        blocks.append(by(snapshot.mappings))
    if snapshot.connections is not None:
        blocks.append(connection_section(snapshot.connections))
    if snapshot.problems:
        blocks.append(problem_section(snapshot.problems))
    return "\n\n".join(printable_lines(block) for block in blocks) + "\n\n"
