"""Parse /proc/meminfo for the denominators of the system threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from memdoor.procfs.errors import ParseError
from memdoor.vocabulary import decimal


@dataclass(frozen=True)
class MemInfo:
    total_kb: int
    # MemAvailable exists since Linux 3.14; older kernels leave it None.
    available_kb: Optional[int]


def parse_meminfo(text: str) -> MemInfo:
    """Only "<n> kB" lines count.

    Both wanted fields carry the unit, so a number cut off by a short read (no
    unit after it) is never taken for a smaller one.
    """
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        number = decimal(parts[0]) if sep and parts[1:] == ["kB"] else None
        if number is not None:
            values[key] = number
    if not values.get("MemTotal"):
        raise ParseError("meminfo: no positive MemTotal line")
    return MemInfo(total_kb=values["MemTotal"], available_kb=values.get("MemAvailable"))
