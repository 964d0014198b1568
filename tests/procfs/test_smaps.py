from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.procfs.maps import parse_maps
from memdoor.procfs.smaps import MemoryRollup, parse_smaps, parse_smaps_rollup
from tests.procfs.recorded import (
    damaged,
    fuzz,
    prefixes,
    recorded_bytes,
    recorded_text,
    value_or_parse_error,
)

# Column sums of the recorded smaps (awk), not of smaps_rollup: the two were
# read a moment apart and the kernel rounds PSS differently in each.
SMAPS_TOTALS = MemoryRollup(
    rss_kb=1504,
    pss_kb=299,
    shared_clean_kb=1372,
    shared_dirty_kb=0,
    private_clean_kb=36,
    private_dirty_kb=96,
    private_hugetlb_kb=0,
    swap_kb=0,
    swap_pss_kb=0,
)
ROLLUP = MemoryRollup(
    rss_kb=1504,
    pss_kb=301,
    shared_clean_kb=1372,
    shared_dirty_kb=0,
    private_clean_kb=36,
    private_dirty_kb=96,
    private_hugetlb_kb=0,
    swap_kb=0,
    swap_pss_kb=0,
    pss_anon_kb=96,
    pss_file_kb=205,
    pss_shmem_kb=0,
)


def _blocks(data: bytes, count: int) -> bytes:
    """The first count mappings of an smaps text, each with all its field lines."""
    headers = [m.start() for m in re.finditer(rb"(?m)^[0-9a-f]+-", data)]
    return data[: headers[count]] if count < len(headers) else data


def test_rollup() -> None:
    rollup = parse_smaps_rollup(recorded_bytes("smaps_rollup"))
    assert rollup == ROLLUP
    assert rollup.uss_kb == 36 + 96


def test_rollup_before_5_5_has_no_pss_split() -> None:
    assert parse_smaps_rollup(recorded_bytes("smaps_rollup_pre55")) == dataclasses.replace(
        ROLLUP, pss_anon_kb=None, pss_file_kb=None, pss_shmem_kb=None
    )


def test_smaps_gives_the_maps_mappings_with_their_rss() -> None:
    mappings = parse_smaps(recorded_bytes("smaps"))
    totals = parse_smaps_rollup(recorded_bytes("smaps"))
    bare = parse_maps(recorded_bytes("maps"))
    assert [m._replace(rss_kb=None) for m in mappings] == bare
    assert [m.rss_kb for m in mappings[:3]] == [8, 20, 8]
    assert sum(m.rss_kb or 0 for m in mappings) == 1504
    assert totals == SMAPS_TOTALS


def test_old_kernel_smaps_without_newer_fields() -> None:
    # No Pss_Dirty, SwapPss or Private_Hugetlb: the optional totals default to 0.
    mappings = parse_smaps(recorded_bytes("smaps_pre"))
    totals = parse_smaps_rollup(recorded_bytes("smaps_pre"))
    assert len(mappings) == 24
    assert totals == SMAPS_TOTALS


def test_a_mapping_without_rss_does_not_borrow_its_neighbours() -> None:
    data = recorded_bytes("smaps")
    second_header_at = len(_blocks(data, 1))
    second_header_end = data.index(b"\n", second_header_at) + 1
    third_header_at = len(_blocks(data, 2))
    # The second mapping keeps its header but loses every field line.
    mappings = parse_smaps(data[:second_header_end] + data[third_header_at:])
    assert len(mappings) == 24
    assert mappings[1].rss_kb is None
    assert [m.rss_kb for m in mappings[:3]] == [8, None, 8]


def test_the_fast_path_gives_what_the_block_by_block_path_gives() -> None:
    """Without any VmFlags line (kernels before 3.8) every block is searched on its own."""
    data = recorded_bytes("smaps")
    without_vmflags = re.sub(rb"(?m)^VmFlags:[^\n]*\n", b"", data)
    assert parse_smaps(without_vmflags) == parse_smaps(data)


@pytest.mark.parametrize(
    "damage",
    [
        b"Garbage line\n",  # a line no kernel writes, between two blocks
        b"Rss:                   4 kB\n",  # a field line out of place
    ],
)
def test_a_line_after_a_vmflags_line_that_is_no_header_keeps_every_mapping(
    damage: bytes,
) -> None:
    data = recorded_bytes("smaps")
    second_block_at = len(_blocks(data, 1))
    mappings = parse_smaps(data[:second_block_at] + damage + data[second_block_at:])
    assert mappings == parse_smaps(data)


def test_empty() -> None:
    assert parse_smaps(b"") == []


@pytest.mark.parametrize("data", [b"garbage\n", b"Rss:   4 kB\nPss:   4 kB\n"])
def test_no_mapping_header(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_smaps(data)


@pytest.mark.parametrize("data", [b"", b"Rss: 4 kB\n", b"[rollup]\nPss:   4 kB\n"])
def test_rollup_missing_fields(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_smaps_rollup(data)


def test_every_cut_gives_parse_error_or_a_true_prefix() -> None:
    sample = _blocks(recorded_bytes("smaps"), 3)
    full_mappings = parse_smaps(sample)
    full_totals = dataclasses.asdict(parse_smaps_rollup(sample))
    for data in prefixes(sample):
        where = repr(data[-60:])
        mappings = value_or_parse_error(parse_smaps, data)
        if mappings is not None:
            assert len(mappings) <= len(full_mappings), where
            for got, want in zip(mappings, full_mappings):
                assert got in (want, want._replace(rss_kb=None)), where
        totals = value_or_parse_error(parse_smaps_rollup, data)
        if totals is not None:
            for key, value in dataclasses.asdict(totals).items():
                assert value is None or 0 <= value <= full_totals[key], (key, where)


def test_every_cut_of_the_rollup_gives_parse_error_or_true_fields() -> None:
    full = dataclasses.asdict(ROLLUP)
    for data in prefixes(recorded_bytes("smaps_rollup")):
        rollup = value_or_parse_error(parse_smaps_rollup, data)
        if rollup is not None:
            for key, value in dataclasses.asdict(rollup).items():
                assert value is None or value == full[key], (key, repr(data[-60:]))


@fuzz
@given(st.binary())
def test_arbitrary_bytes(data: bytes) -> None:
    value_or_parse_error(parse_smaps, data)
    value_or_parse_error(parse_smaps_rollup, data)


@fuzz
@given(damaged(recorded_text("smaps")[:3000]))
def test_damaged_recording(text: str) -> None:
    value_or_parse_error(parse_smaps, text.encode("utf-8", "surrogatepass"))


@fuzz
@given(damaged(recorded_text("smaps_rollup")))
def test_damaged_rollup(text: str) -> None:
    value_or_parse_error(parse_smaps_rollup, text.encode("utf-8", "surrogatepass"))
