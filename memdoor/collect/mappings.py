"""Memory mappings with their resident size, and the totals that come with them.

smaps gives both the per-mapping Rss and, summed, everything smaps_rollup
gives, so one read serves the mappings and the memory section. maps (no
resident sizes) is the fallback when smaps fails for a reason other than the
process being gone.
"""

from __future__ import annotations

from typing import Optional, Union

from memdoor.collect.reading import Unreadable, malformed, read_bytes
from memdoor.procfs.errors import ParseError
from memdoor.procfs.maps import Mapping, parse_maps
from memdoor.procfs.smaps import MemoryRollup, parse_smaps


def read_mappings(
    pid: int, problems: list[Unreadable], proc: str = "/proc"
) -> tuple[Optional[list[Mapping]], Optional[MemoryRollup]]:
    smaps_path = f"{proc}/{pid}/smaps"
    data = read_bytes(smaps_path)
    if not isinstance(data, Unreadable):
        try:
            mappings, rollup = parse_smaps(data)
            return mappings, rollup
        except ParseError as exc:
            problems.append(malformed(smaps_path, str(exc)))
    else:
        problems.append(data)
        if data.reason == "vanished":
            return None, None
    return _read_maps(f"{proc}/{pid}/maps", problems), None


def _read_maps(path: str, problems: list[Unreadable]) -> Optional[list[Mapping]]:
    data: Union[bytes, Unreadable] = read_bytes(path)
    if isinstance(data, Unreadable):
        problems.append(data)
        return None
    try:
        return parse_maps(data)
    except ParseError as exc:
        problems.append(malformed(path, str(exc)))
        return None
