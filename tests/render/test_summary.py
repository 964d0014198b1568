"""The mappings summary against a mapping-by-mapping count of the same groups."""

from __future__ import annotations

from typing import Any, Optional

from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.maps import Mapping, mapping_group
from memdoor.render.summary import summarize_mappings
from tests.procfs.recorded import fuzz

PATHS = ["", "[heap]", "[stack]", "[stack:12]", "[anon:arena]", "[vdso]", "/lib/a.so", "/b"]


def counted_one_by_one(mappings: list[Mapping]) -> dict[tuple[str, str], list[int]]:
    groups: dict[tuple[str, str], list[int]] = {}
    for m in mappings:
        entry = groups.setdefault(mapping_group(m), [0, 0, 0])
        entry[0] += 1
        entry[1] += m.size_kb
        entry[2] += m.rss_kb or 0
    return groups


@st.composite
def mapping_lists(draw: st.DrawFn) -> list[Mapping]:
    mappings = []
    for _ in range(draw(st.integers(0, 30))):
        start = draw(st.integers(0, 1 << 40))
        size = draw(st.integers(0, 1 << 24))
        rss: Optional[int] = draw(st.one_of(st.none(), st.integers(0, size // 1024)))
        path = draw(st.sampled_from(PATHS))
        mappings.append(Mapping(start, start + size, "rw-p", 0, "00:00", 0, path, rss))
    return mappings


@fuzz
@given(mapping_lists(), st.integers(0, 10))
def test_groups_and_totals_are_those_of_each_mapping_counted(
    mappings: list[Mapping], top: int
) -> None:
    summary: dict[str, Any] = summarize_mappings(mappings, top)
    expected = counted_one_by_one(mappings)
    listed = {
        (g["kind"], g["name"]): [g["count"], g["size_kb"], g["rss_kb"]] for g in summary["groups"]
    }
    assert len(listed) == min(top, len(expected))
    assert all(expected[group] == totals for group, totals in listed.items())
    omitted = [totals for group, totals in expected.items() if group not in listed]
    assert summary["omitted"] == {
        "groups": len(omitted),
        "count": sum(t[0] for t in omitted),
        "size_kb": sum(t[1] for t in omitted),
        "rss_kb": sum(t[2] for t in omitted),
    }
    assert summary["total"] == {
        "count": len(mappings),
        "size_kb": sum(m.size_kb for m in mappings),
        "rss_kb": sum(m.rss_kb or 0 for m in mappings),
    }
    assert summary["resident_known"] == all(m.rss_kb is not None for m in mappings)
    ranked = [(-g["rss_kb"], -g["size_kb"], g["name"]) for g in summary["groups"]]
    assert ranked == sorted(ranked)
