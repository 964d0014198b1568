from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.process_text import EscapedText, to_bytes
from memdoor.procfs.errors import ParseError
from memdoor.procfs.maps import Mapping, parse_maps
from tests.procfs.recorded import (
    damaged,
    fuzz,
    prefixes,
    recorded_bytes,
    recorded_text,
    value_or_parse_error,
)

# The seed printed 926224312 kB for this 580 MiB heap by mixing units.
SEED_HEAP = b"55e87fb51000-55e8a3f67000 rw-p 00000000 00:00 0                          [heap]\n"


def test_recorded_process() -> None:
    mappings = parse_maps(recorded_bytes("maps"))
    assert len(mappings) == 24
    assert mappings[0] == Mapping(
        0x55D7E29F7000, 0x55D7E29F9000, "r--p", 0, "fe:00", 260875, "/usr/bin/sleep"
    )
    assert mappings[1].offset == 0x2000
    assert mappings[-1] == Mapping(
        0xFFFFFFFFFF600000, 0xFFFFFFFFFF601000, "--xp", 0, "00:00", 0, "[vsyscall]"
    )
    assert {m.path for m in mappings} >= {"", "[heap]", "[stack]", "[vdso]", "[vvar]"}
    assert all(m.rss_kb is None for m in mappings)
    assert all(m.size_kb == (m.end - m.start) // 1024 for m in mappings)


def test_seed_heap_size_is_end_minus_start() -> None:
    (heap,) = parse_maps(SEED_HEAP)
    assert heap.size_kb == (0x55E8A3F67000 - 0x55E87FB51000) // 1024 == 594008
    assert heap.path == "[heap]"


def test_anonymous_mapping_has_empty_path() -> None:
    (anon,) = parse_maps(b"7f390e2dd000-7f390e2e0000 rw-p 00000000 00:00 0 \n")
    assert anon.path == ""
    assert anon.size_kb == 12


def test_path_with_spaces_and_deleted_marker_is_kept_whole() -> None:
    line = b"7f00000000-7f00001000 r--s 00000000 00:05 42     /memfd:my buf (deleted)\n"
    assert parse_maps(line)[0].path == "/memfd:my buf (deleted)"


def test_undecodable_path_round_trips() -> None:
    line = b"7f00000000-7f00001000 r--p 00000000 fe:00 42     /opt/caf\xe9.so\n"
    path = parse_maps(line)[0].path
    assert to_bytes(path) == b"/opt/caf\xe9.so"
    assert path == EscapedText("/opt/caf\\xe9.so")


def test_empty_maps_of_a_kernel_thread() -> None:
    assert parse_maps(b"") == []


@pytest.mark.parametrize(
    "garbage",
    [
        b"\n",
        b"garbage\n",
        b"7f00-7f10 rw-p 00000000 00:00\n",
        b"7f00-7f10 rwzp 00000000 00:00 0\n",
        b"7g00-7f10 rw-p 00000000 00:00 0\n",
        b"7f00 7f10 rw-p 00000000 00:00 0\n",
    ],
)
def test_a_garbage_line_fails_the_whole_parse(garbage: bytes) -> None:
    data = recorded_bytes("maps")
    middle = data.index(b"\n", len(data) // 2) + 1
    with pytest.raises(ParseError):
        parse_maps(data[:middle] + garbage + data[middle:])


def test_every_cut_gives_parse_error_or_a_true_prefix() -> None:
    full = parse_maps(recorded_bytes("maps"))
    for data in prefixes(recorded_bytes("maps")):
        mappings = value_or_parse_error(parse_maps, data)
        if mappings is not None:
            assert mappings == full[: len(mappings)], repr(data[-60:])


@fuzz
@given(st.binary())
def test_arbitrary_bytes(data: bytes) -> None:
    value_or_parse_error(parse_maps, data)


@fuzz
@given(damaged(recorded_text("maps")))
def test_damaged_recording(text: str) -> None:
    value_or_parse_error(parse_maps, text.encode("utf-8", "surrogatepass"))
