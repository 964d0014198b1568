"""The columns a summary reads and the rows built later, from one maps text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.procfs.mapping_table import MappingTable, mapping_paths
from memdoor.procfs.maps import Mapping, parse_maps
from memdoor.procfs.pagemap import Undecidable, parse_maps_with_resident
from memdoor.render.summary import summarize_mappings
from tests.procfs.recorded import fuzz, recorded_bytes

PAGE = 4096
MAPS = recorded_bytes("pagemap_maps")
SCAN = recorded_bytes("pagemap_scan")


def table() -> MappingTable:
    return parse_maps_with_resident(MAPS, PAGE, SCAN)


def test_the_columns_are_the_rows_fields() -> None:
    columns = table()
    rows = table().rows()
    assert columns.starts == [m.start for m in rows]
    assert columns.ends == [m.end for m in rows]
    assert columns.paths == [m.path for m in rows]
    assert columns.rss_kb == [m.rss_kb for m in rows]
    assert list(mapping_paths(columns)) == list(mapping_paths(rows)) == columns.paths


def test_the_rows_are_the_maps_parsers_with_resident_sizes() -> None:
    mappings = table()
    assert len(mappings) == 24
    expected = [m._replace(rss_kb=kb) for m, kb in zip(parse_maps(MAPS), mappings.rss_kb)]
    assert mappings == expected
    assert list(mappings) == expected
    assert mappings[0] == expected[0] and mappings[-2:] == expected[-2:]
    assert mappings.rows() is mappings.rows()


def test_a_table_compares_with_tables_and_lists_only() -> None:
    assert table() == table()
    assert table() != table().rows()[1:]
    assert table() != tuple(table().rows())
    empty = parse_maps_with_resident(b"", PAGE, b"")
    assert empty == [] and len(empty) == 0 and list(empty) == []


def test_a_summary_from_the_columns_is_the_one_from_the_rows() -> None:
    assert summarize_mappings(table(), 5) == summarize_mappings(table().rows(), 5)


def _damaged(draw: st.DrawFn) -> bytes:
    start = draw(st.integers(0, len(MAPS)))
    end = draw(st.integers(start, min(len(MAPS), start + 60)))
    return MAPS[:start] + draw(st.binary(max_size=60)) + MAPS[end:]


@fuzz
@given(st.data())
def test_columns_and_rows_accept_what_parse_maps_accepts(data: st.DataObject) -> None:
    """The columns' pattern and the rows' pattern read a damaged maps text as
    parse_maps does: the same mappings, or all three refuse it."""
    text = data.draw(st.composite(_damaged)())
    try:
        expected: list[Mapping] = parse_maps(text)
    except ParseError:
        expected = []
        refused = True
    else:
        refused = False
    for rows in (False, True):
        try:
            mappings = parse_maps_with_resident(text, PAGE, SCAN, rows)
        except ParseError:
            assert refused
            continue
        except Undecidable:
            continue
        assert not refused
        assert [m._replace(rss_kb=None) for m in mappings] == expected


def test_rows_built_in_the_parse_are_the_rows_built_later() -> None:
    built = parse_maps_with_resident(MAPS, PAGE, SCAN, rows=True)
    later = table()
    assert built.rows() == later.rows()
    assert (built.starts, built.ends, built.paths, built.rss_kb) == (
        later.starts,
        later.ends,
        later.paths,
        later.rss_kb,
    )
    assert parse_maps_with_resident(b"", PAGE, b"", rows=True) == []
