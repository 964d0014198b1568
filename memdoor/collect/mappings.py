"""Memory mappings with their resident size.

smaps gives each mapping's Rss; maps (no resident sizes) is the fallback when
smaps fails for a reason other than the process being gone.
"""

from __future__ import annotations

from typing import Callable, Optional

from memdoor.collect.reading import Unreadable, malformed, read_bytes
from memdoor.procfs.errors import ParseError
from memdoor.procfs.maps import Mapping, parse_maps
from memdoor.procfs.smaps import parse_smaps


def read_mappings(
    pid: int, problems: list[Unreadable], proc: str = "/proc"
) -> Optional[list[Mapping]]:
    smaps = _read(f"{proc}/{pid}/smaps", parse_smaps, problems)
    if smaps is not None or (problems and problems[-1].reason == "vanished"):
        return smaps
    return _read(f"{proc}/{pid}/maps", parse_maps, problems)


def _read(
    path: str, parse: Callable[[bytes], list[Mapping]], problems: list[Unreadable]
) -> Optional[list[Mapping]]:
    data = read_bytes(path)
    if isinstance(data, Unreadable):
        problems.append(data)
        return None
    try:
        return parse(data)
    except ParseError as exc:
        problems.append(malformed(path, str(exc)))
        return None
