"""Recorded /proc text, and the one property every parser must keep on damaged input.

The recordings in tests/fixtures/proc_text come from this machine's /proc (see
the README there); a parser that only ever saw hand-written samples would not
notice the kernel's padding, tabs or field order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional, TypeVar

from hypothesis import settings
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError

PROC_TEXT = Path(__file__).resolve().parent.parent / "fixtures" / "proc_text"

Data = TypeVar("Data", str, bytes)
Parsed = TypeVar("Parsed")


def recorded_bytes(name: str) -> bytes:
    return (PROC_TEXT / name).read_bytes()


def recorded_text(name: str) -> str:
    return recorded_bytes(name).decode()


def prefixes(data: Data) -> Iterator[Data]:
    """Every proper prefix: the input cut at each byte (or character) offset."""
    for end in range(len(data)):
        yield data[:end]


def value_or_parse_error(parse: Callable[[Data], Parsed], data: Data) -> Optional[Parsed]:
    """None when the parser refused the input with ParseError.

    Any other exception escapes and fails the calling test: collectors catch
    ParseError and nothing else, so a ValueError or IndexError from a parser
    would crash a snapshot.
    """
    try:
        return parse(data)
    except ParseError:
        return None


# Property tests run parsers, not clocks: no deadline, so a slow shared VM
# cannot fail them.
fuzz = settings(deadline=None, max_examples=300)


@st.composite
def damaged(draw: st.DrawFn, original: str) -> str:
    """The recording with random text spliced in at a random offset, replacing a random span."""
    start = draw(st.integers(0, len(original)))
    end = draw(st.integers(start, min(len(original), start + 40)))
    return original[:start] + draw(st.text(max_size=40)) + original[end:]
