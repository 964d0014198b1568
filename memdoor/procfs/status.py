"""Parse /proc/PID/status: the cheapest file with RSS split by kind, page tables and swap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from memdoor.process_text import from_os
from memdoor.procfs.errors import ParseError
from memdoor.vocabulary import decimal


@dataclass(frozen=True)
class ProcStatus:
    """Memory counters from status, in kB.

    Fields are optional because kernel threads and zombies omit the Vm* lines,
    and RssAnon/RssFile/RssShmem only exist since Linux 4.5.
    """

    name: str
    ppid: Optional[int]
    uid: Optional[int]
    vm_rss_kb: Optional[int]
    rss_anon_kb: Optional[int]
    rss_file_kb: Optional[int]
    rss_shmem_kb: Optional[int]
    vm_swap_kb: Optional[int]
    vm_pte_kb: Optional[int]
    vm_hwm_kb: Optional[int]
    vm_size_kb: Optional[int]
    threads: Optional[int]


_KB_FIELDS = {
    "VmRSS": "vm_rss_kb",
    "RssAnon": "rss_anon_kb",
    "RssFile": "rss_file_kb",
    "RssShmem": "rss_shmem_kb",
    "VmSwap": "vm_swap_kb",
    "VmPTE": "vm_pte_kb",
    "VmHWM": "vm_hwm_kb",
    "VmSize": "vm_size_kb",
}


def _kb(value: str, key: str) -> int:
    parts = value.split()
    number = decimal(parts[0]) if len(parts) == 2 and parts[1] == "kB" else None
    if number is None:
        raise ParseError(f"status {key}: expected '<n> kB', got {value!r}")
    return number


def parse_status(text: str) -> ProcStatus:
    """Parse status text; a missing Name line means the file is not status at all.

    The kernel ends every line with a newline. Text that does not was cut short,
    and its last line could be a cut-off PPid or Name that still looks valid.
    Lines end at newlines only: the process's name may hold other characters
    str.splitlines() breaks at (U+0085, U+2028, ...), and the part after one
    would be read as a line of its own.
    """
    if text and not text.endswith("\n"):
        raise ParseError("status: last line has no newline (read cut short)")
    values: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition(":")
        if sep:
            values[key] = value.strip()
    if "Name" not in values:
        raise ParseError("status: no Name line")
    kb: dict[str, Optional[int]] = {
        attr: (_kb(values[key], key) if key in values else None) for key, attr in _KB_FIELDS.items()
    }
    return ProcStatus(
        # The kernel escapes newlines and backslashes in Name; keep it as printed,
        # decoded as every name a process chooses is (memdoor.process_text).
        name=from_os(values["Name"]),
        ppid=_optional_int(values.get("PPid"), "PPid"),
        uid=_optional_int(values["Uid"].split()[0] if values.get("Uid") else None, "Uid"),
        threads=_optional_int(values.get("Threads"), "Threads"),
        **kb,
    )


def _optional_int(value: Optional[str], key: str) -> Optional[int]:
    if value is None:
        return None
    number = decimal(value)
    if number is None:
        raise ParseError(f"status {key}: expected an integer, got {value!r}")
    return number
