"""The PAGEMAP_SCAN vector parser and the per-mapping sums, on a recorded vector and made ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.procfs.maps import parse_maps
from memdoor.procfs.pagemap import (
    PAGE_IS_HUGE,
    PAGE_IS_PFNZERO,
    PAGE_IS_PRESENT,
    PAGE_IS_SWAPPED,
    REGION,
    Undecidable,
    parse_maps_with_resident,
    parse_page_regions,
    resident_kb,
)
from memdoor.procfs.smaps import parse_smaps
from tests.procfs.recorded import fuzz, prefixes, recorded_bytes, value_or_parse_error

PAGE = 4096


def vector(*regions: tuple[int, int, int]) -> bytes:
    return b"".join(REGION.pack(*region) for region in regions)


def test_the_recorded_scan_gives_what_smaps_gave_for_every_mapping() -> None:
    """maps, smaps and the scan of one idle process, read one after another."""
    mappings = parse_maps_with_resident(
        recorded_bytes("pagemap_maps"), PAGE, recorded_bytes("pagemap_scan")
    )
    assert mappings == parse_smaps(recorded_bytes("pagemap_smaps"))
    assert len(mappings) == 24 and sum(m.rss_kb or 0 for m in mappings) == 1496


def test_the_recorded_vector_is_present_ranges_in_order() -> None:
    regions, huge = parse_page_regions(recorded_bytes("pagemap_scan"), PAGE)
    assert len(regions) == 16 and huge == []
    assert regions == sorted(regions)
    assert sum(end - start for start, end in regions) // 1024 == 1496


def test_every_cut_of_the_recorded_vector_inside_a_region_is_refused() -> None:
    data = recorded_bytes("pagemap_scan")
    whole, _ = parse_page_regions(data, PAGE)
    for prefix in prefixes(data):
        if len(prefix) % REGION.size:
            with pytest.raises(ParseError, match="whole number"):
                parse_page_regions(prefix, PAGE)
        else:
            # The scan stops between regions when its vector fills; the rest follows.
            regions, _ = parse_page_regions(prefix, PAGE)
            assert regions == whole[: len(prefix) // REGION.size]


@pytest.mark.parametrize(
    ("regions", "message"),
    [
        ([(0x1000, 0x2000, PAGE_IS_PRESENT | PAGE_IS_PFNZERO)], "categories"),
        ([(0x1000, 0x2000, PAGE_IS_SWAPPED)], "categories"),
        ([(0x1000, 0x2000, 0)], "categories"),
        ([(0x1000, 0x2000, PAGE_IS_HUGE)], "categories"),
        ([(0x2000, 0x2000, PAGE_IS_PRESENT)], "empty"),
        ([(0x3000, 0x2000, PAGE_IS_PRESENT)], "empty"),
        ([(0x1800, 0x2000, PAGE_IS_PRESENT)], "not page-aligned"),
        ([(0x1000, 0x2800, PAGE_IS_PRESENT)], "not page-aligned"),
        ([(0x3000, 0x4000, PAGE_IS_PRESENT), (0x1000, 0x2000, PAGE_IS_PRESENT)], "out of order"),
        ([(0x1000, 0x3000, PAGE_IS_PRESENT), (0x2000, 0x4000, PAGE_IS_PRESENT)], "out of order"),
    ],
)
def test_a_vector_the_kernel_would_not_write_is_refused(
    regions: list[tuple[int, int, int]], message: str
) -> None:
    with pytest.raises(ParseError, match=message):
        parse_page_regions(vector(*regions), PAGE)


def test_an_empty_vector_is_nothing_present() -> None:
    assert parse_page_regions(b"", PAGE) == ([], [])


@fuzz
@given(st.binary(max_size=24 * 6))
def test_any_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    parsed = value_or_parse_error(lambda d: parse_page_regions(d, PAGE), data)
    if parsed is not None:
        regions, huge = parsed
        assert all(start < end for start, end in regions)
        assert set(huge) <= set(regions)


@fuzz
@given(st.integers(0, 24 * 16 - 1), st.binary(min_size=1, max_size=24))
def test_damaged_recorded_vectors_parse_or_raise_parse_error(at: int, junk: bytes) -> None:
    data = recorded_bytes("pagemap_scan")
    damaged = data[:at] + junk + data[at + len(junk) :]
    parsed = value_or_parse_error(lambda d: parse_page_regions(d, PAGE), damaged)
    if parsed is not None:
        assert len(parsed[0]) == len(damaged) // REGION.size


@st.composite
def layout(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Mappings and present ranges in page numbers: sorted, disjoint, gaps allowed."""

    def runs(count: int) -> list[tuple[int, int]]:
        cuts = sorted(draw(st.sets(st.integers(0, 200), min_size=2 * count, max_size=2 * count)))
        return list(zip(cuts[0::2], cuts[1::2]))

    return runs(draw(st.integers(0, 12))), runs(draw(st.integers(0, 12)))


@fuzz
@given(layout())
def test_resident_kb_is_the_overlap_page_by_page(
    pages: tuple[list[tuple[int, int]], list[tuple[int, int]]],
) -> None:
    mappings, present = pages
    present_pages = {page for start, end in present for page in range(start, end)}
    expected = [
        sum(PAGE // 1024 for page in range(start, end) if page in present_pages)
        for start, end in mappings
    ]
    starts = [start * PAGE for start, _ in mappings]
    ends = [end * PAGE for _, end in mappings]
    regions = [(start * PAGE, end * PAGE) for start, end in present]
    assert resident_kb(starts, ends, regions) == expected


def test_a_range_across_adjacent_mappings_is_split_between_them() -> None:
    starts, ends = [0x1000, 0x3000, 0x8000], [0x3000, 0x5000, 0x9000]
    assert resident_kb(starts, ends, [(0x2000, 0x4000), (0x6000, 0x7000)]) == [4, 4, 0]


def test_the_maps_checks_hold_on_this_path_too() -> None:
    maps = recorded_bytes("pagemap_maps")
    scan = recorded_bytes("pagemap_scan")
    headers = [m._replace(rss_kb=None) for m in parse_maps_with_resident(maps, PAGE, scan)]
    assert headers == parse_maps(maps)
    with pytest.raises(ParseError, match="no newline"):
        parse_maps_with_resident(maps[:-1], PAGE, scan)
    with pytest.raises(ParseError, match="not mapping headers"):
        parse_maps_with_resident(maps + b"garbage\n", PAGE, scan)
    with pytest.raises(ParseError, match="whole number"):
        parse_maps_with_resident(maps, PAGE, scan[:-1])
    assert parse_maps_with_resident(b"", PAGE, b"") == []


MAPS = (
    b"7f0000000000-7f0000400000 rw-p 00000000 00:00 0 \n"
    b"7f0000400000-7f0000800000 rw-s 00000000 00:10 4242"
    b"                       /anon_hugepage (deleted)\n"
)


def test_huge_pages_in_an_anonymous_mapping_are_resident() -> None:
    """Transparent huge pages: smaps counts them in Rss."""
    scan = vector((0x7F0000000000, 0x7F0000200000, PAGE_IS_PRESENT | PAGE_IS_HUGE))
    anonymous, hugetlb = parse_maps_with_resident(MAPS, PAGE, scan)
    assert (anonymous.rss_kb, hugetlb.rss_kb) == (2048, 0)


def test_huge_pages_in_a_mapping_with_a_path_are_left_to_smaps() -> None:
    """hugetlbfs, which smaps leaves out of Rss, or a file's THP, which it counts."""
    scan = vector((0x7F0000400000, 0x7F0000600000, PAGE_IS_PRESENT | PAGE_IS_HUGE))
    with pytest.raises(Undecidable, match="anon_hugepage"):
        parse_maps_with_resident(MAPS, PAGE, scan)
    small_pages = vector((0x7F0000400000, 0x7F0000600000, PAGE_IS_PRESENT))
    assert parse_maps_with_resident(MAPS, PAGE, small_pages)[1].rss_kb == 2048
