"""A process's mappings as columns, each mapping's tuple built only when one is asked for.

A summary needs each mapping's path, size and resident size; the full list
(perms, offset, device, inode) is wanted only for a record of detail "full"
and the seed's report. For 20,000 mappings, converting and building every
tuple was half the CPU of the mappings section, so the columns come first
and the rows are built once, on first use, from the maps text kept here.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import Optional, Union, overload

from memdoor.procfs.errors import ParseError
from memdoor.procfs.maps import HEADER_FIELDS, Mapping, Names

# One maps line, matched whole (maps.HEADER's fields, the newline included):
# COLUMNS captures start, end and path, ROWS every field. The path's group
# always takes part (empty when the line has none), so re.split's list has no
# None in it; see split_columns.
_PATH = rb"(?: +|(?=\n))([^\n]*)\n"
COLUMNS = re.compile(
    rb"([0-9a-f]+)-([0-9a-f]+) [-rwxsp]{4} [0-9a-f]+ [0-9a-f]+:[0-9a-f]+ \d+" + _PATH
)
ROWS = re.compile(HEADER_FIELDS + _PATH)
# The fields a summary does not need, one match per header of the text the
# columns came from.
_REST = re.compile(rb"\n[0-9a-f]+-[0-9a-f]+ ([-rwxsp]{4}) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)")


@contextmanager
def collector_paused() -> Iterator[None]:
    """Parsing 20,000 mappings makes 20,000 tuples, and each few hundred of them
    set off a collection that walks every young one again: half the build's
    time, measured, for objects that hold no cycles. Left as it was if off."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def split_columns(line: re.Pattern[bytes], data: bytes, what: str) -> list[list[bytes]]:
    """Each captured field of line as a column, every line of data being one match.

    re.split hands out the text between matches and the groups of each match
    in one flat list, so the columns are slices of it: for 20,000 mappings a
    fifth cheaper than findall's tuple per line turned into columns. A line
    that is not a whole match leaves text between the matches, and ParseError
    says how many lines did.
    """
    width = line.groups + 1
    parts = line.split(data)
    between = parts[0::width]
    if any(between):
        # A text ending inside a line: the rest of that line looked like a match.
        bad = sum(text.count(b"\n") + (not text.endswith(b"\n")) for text in between if text)
        lines = data.count(b"\n")
        raise ParseError(f"{what}: {bad} of {lines} lines are not mapping headers")
    return [parts[group::width] for group in range(1, width)]


def mapping_rows(
    names: Names,
    starts: Iterable[int],
    ends: Iterable[int],
    perms: Iterable[bytes],
    offsets: Iterable[bytes],
    devs: Iterable[bytes],
    inodes: Iterable[bytes],
    paths: Iterable[str],
    rss_kb: Iterable[int],
) -> list[Mapping]:
    """Mapping tuples from columns, the header's fields still as maps wrote them:
    converted with map() and built with tuple.__new__, so the work per mapping
    stays in C."""
    name = names.__getitem__
    columns = zip(
        starts,
        ends,
        map(name, perms),
        map(int, offsets, repeat(16)),
        map(name, devs),
        map(int, inodes),
        paths,
        rss_kb,
    )
    return list(map(tuple.__new__, repeat(Mapping), columns))


class MappingTable(Sequence[Mapping]):
    """Every mapping of one maps text in address order: start, end, path and
    resident kB as lists; as a Sequence, the Mapping tuples (built on first use)."""

    __slots__ = ("_maps", "_names", "_rows", "ends", "paths", "rss_kb", "starts")

    def __init__(
        self,
        maps: bytes,
        names: Names,
        starts: list[int],
        ends: list[int],
        paths: list[str],
        rss_kb: list[int],
        rows: Optional[list[Mapping]] = None,
    ) -> None:
        """rows: the Mapping tuples, where the parser built them with the columns;
        then maps is not needed."""
        self._maps = b"" if rows is not None else maps
        self._names = names
        self._rows = rows
        self.starts = starts
        self.ends = ends
        self.paths = paths
        self.rss_kb = rss_kb

    def rows(self) -> list[Mapping]:
        """The Mapping tuples, built once."""
        if self._rows is None:
            with collector_paused():
                self._rows = self._build_rows()
            # The text is only needed to build the rows.
            self._maps = b""
        return self._rows

    def _build_rows(self) -> list[Mapping]:
        rest = _REST.findall(b"\n" + self._maps)
        perms, offsets, devs, inodes = zip(*rest) if rest else ((), (), (), ())
        return mapping_rows(
            self._names,
            self.starts,
            self.ends,
            perms,
            offsets,
            devs,
            inodes,
            self.paths,
            self.rss_kb,
        )

    def __len__(self) -> int:
        return len(self.starts)

    @overload
    def __getitem__(self, index: int) -> Mapping: ...

    @overload
    def __getitem__(self, index: slice) -> list[Mapping]: ...

    def __getitem__(self, index: Union[int, slice]) -> Union[Mapping, list[Mapping]]:
        return self.rows()[index]

    def __iter__(self) -> Iterator[Mapping]:
        return iter(self.rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, MappingTable):
            return self.rows() == other.rows()
        if isinstance(other, list):
            return self.rows() == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"MappingTable({len(self)} mappings)"


def mapping_paths(mappings: Sequence[Mapping]) -> Iterable[str]:
    """Each mapping's path, without building the rows of a MappingTable."""
    if isinstance(mappings, MappingTable):
        return mappings.paths
    return (m.path for m in mappings)
