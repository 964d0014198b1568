"""Parse the mapping header lines shared by /proc/PID/maps and /proc/PID/smaps.

A process can have tens of thousands of mappings; the parser works on bytes with
one compiled regex so the regex engine, not a Python loop over lines, walks the
buffer (proc-costs.md: splitting 14 MB of smaps into lines alone costs 20 ms).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any, NamedTuple, Optional

from memdoor.process_text import EscapedText, decode
from memdoor.procfs.errors import ParseError


class Mapping(NamedTuple):
    """One virtual memory area. A NamedTuple because 20,000 of them are built per snapshot."""

    start: int
    end: int
    perms: str
    offset: int
    dev: str
    inode: int
    path: str
    rss_kb: Optional[int] = None

    @property
    def size_kb(self) -> int:
        # end is exclusive; the seed printed garbage here by mixing units.
        return (self.end - self.start) // 1024


# Every field of a header but the path, each a group.
HEADER_FIELDS = rb"([0-9a-f]+)-([0-9a-f]+) ([-rwxsp]{4}) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)"
# Every header is matched after a newline instead of with ^ and re.M: a pattern
# that starts with a literal lets the regex engine jump between newlines in C,
# about five times faster on a 14 MB smaps than trying ^ at every position.
# Callers search b"\n" + data so the first line has its newline too, or match
# the first line on its own.
HEADER_BODY = HEADER_FIELDS + rb"(?: +([^\n]*))?(?=\n)"
HEADER = re.compile(rb"\n" + HEADER_BODY)


def check_complete(data: bytes, what: str) -> None:
    """The kernel ends every line with a newline; text that does not was cut short."""
    if data and not data.endswith(b"\n"):
        raise ParseError(f"{what}: last line has no newline (read cut short)")


class Names(dict[bytes, str]):
    """The strings of one parse (permissions, devices, paths), each decoded once.

    A process's mappings repeat a handful of permissions and devices and a few
    hundred paths, so looking the bytes up is cheaper than decoding every
    field. The strings are interned: the daemon keeps a snapshot of every
    watched process, and the same libraries repeat across all of them. A path
    is the name of a file the process mapped, any bytes it chose, so it is
    decoded by memdoor.process_text (an EscapedText, which sys.intern refuses,
    stays as it is).
    """

    def __missing__(self, raw: bytes) -> str:
        text = decode(raw)
        self[raw] = text = text if isinstance(text, EscapedText) else sys.intern(text)
        return text


def mapping_from_match(
    match: re.Match[bytes], names: Names, rss_kb: Optional[int] = None
) -> Mapping:
    return mapping_from_groups(match.groups(b"")[:7], names, rss_kb)


def mapping_from_groups(
    groups: Sequence[Any], names: Names, rss_kb: Optional[int] = None
) -> Mapping:
    start, end, perms, offset, dev, inode, path = groups
    return Mapping(
        int(start, 16),
        int(end, 16),
        names[perms],
        int(offset, 16),
        names[dev],
        int(inode),
        names[path],
        rss_kb,
    )


def parse_maps(data: bytes) -> list[Mapping]:
    """Parse maps text; a line that is not a valid header is an error, not skipped.

    Skipping would silently under-report the address space, so a count that does
    not match the number of lines raises ParseError. So does a final line
    without its newline: a read cut inside the inode or path still looks like a
    complete header, with a wrong inode or path.
    """
    check_complete(data, "maps")
    names = Names()
    mappings = [mapping_from_groups(g, names) for g in HEADER.findall(b"\n" + data)]
    lines = data.count(b"\n")
    if len(mappings) != lines:
        raise ParseError(f"maps: {lines - len(mappings)} of {lines} lines are not mapping headers")
    return mappings


# "[stack:1234]" (older kernels) is still the stack; "[anon:name]" are named
# anonymous regions (prctl PR_SET_VMA_ANON_NAME), grouped by name.
_THREAD_STACK = re.compile(r"^\[stack:\d+\]$")


def path_group(path: str) -> tuple[str, str]:
    """(kind, name) of the group of a mapping with this path (as records carry it)."""
    if not path:
        return "anonymous", "[anonymous]"
    if _THREAD_STACK.match(path):
        return "special", "[stack]"
    if path.startswith("[anon:"):
        return "anonymous", path
    if path.startswith("["):
        return "special", path
    return "file", path
