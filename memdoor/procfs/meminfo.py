"""Parse /proc/meminfo for the denominators of the system threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from memdoor.procfs.errors import ParseError


@dataclass(frozen=True)
class MemInfo:
    total_kb: int
    # MemAvailable exists since Linux 3.14; older kernels leave it None.
    available_kb: Optional[int]


def parse_meminfo(text: str) -> MemInfo:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        number = rest.split()[:1]
        if sep and number and number[0].isdigit():
            values[key] = int(number[0])
    if not values.get("MemTotal"):
        raise ParseError("meminfo: no positive MemTotal line")
    return MemInfo(total_kb=values["MemTotal"], available_kb=values.get("MemAvailable"))
