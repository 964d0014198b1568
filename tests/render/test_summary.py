"""The mappings summary against a mapping-by-mapping count of the same groups."""

from __future__ import annotations

from typing import Any, Optional

from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.maps import Mapping, path_group
from memdoor.render.summary import MappingGroups, summarize_mappings
from tests.procfs.recorded import fuzz

PATHS = ["", "[heap]", "[stack]", "[stack:12]", "[anon:arena]", "[vdso]", "/lib/a.so", "/b"]


def counted_one_by_one(mappings: list[Mapping]) -> dict[tuple[str, str], list[int]]:
    groups: dict[tuple[str, str], list[int]] = {}
    for m in mappings:
        entry = groups.setdefault(path_group(m.path), [0, 0, 0])
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


def anonymous(start_mb: int, size_mb: int, rss_mb: Optional[int]) -> Mapping:
    rss = None if rss_mb is None else rss_mb * 1024
    return Mapping(start_mb << 20, (start_mb + size_mb) << 20, "rw-p", 0, "00:00", 0, "", rss)


def library(start_mb: int, path: str, rss_mb: int) -> Mapping:
    return Mapping(start_mb << 20, (start_mb + 4) << 20, "r-xp", 0, "08:01", 7, path, rss_mb * 1024)


def test_each_group_says_how_it_changed_since_the_previous_full_snapshot() -> None:
    before = [anonymous(0, 64, 10), library(100, "/lib/a.so", 2), library(200, "/lib/gone.so", 1)]
    after = [anonymous(0, 64, 40), anonymous(64, 16, 16), library(100, "/lib/a.so", 2)]
    after.append(library(300, "/lib/new.so", 3))
    summary = summarize_mappings(after, 10, MappingGroups(before, 1_700_000_000.0))
    assert summary["changes_since"] == "2023-11-14T22:13:20.000Z"
    groups = {group["name"]: group for group in summary["groups"]}
    assert groups["[anonymous]"]["rss_kb_change"] == 46 * 1024
    assert groups["[anonymous]"]["size_kb_change"] == 16 * 1024
    assert groups["/lib/a.so"]["rss_kb_change"] == 0
    # A group that was not there grew from nothing; one that went shows in the total.
    assert groups["/lib/new.so"]["rss_kb_change"] == 3 * 1024
    assert groups["/lib/new.so"]["size_kb_change"] == 4 * 1024
    assert summary["total"]["rss_kb_change"] == (56 + 2 + 3 - 13) * 1024
    assert summary["total"]["size_kb_change"] == (80 + 8 - 72) * 1024


def test_without_a_previous_full_snapshot_no_change_is_claimed() -> None:
    summary = summarize_mappings([anonymous(0, 64, 10)], 10)
    assert "changes_since" not in summary
    assert "rss_kb_change" not in summary["total"]
    assert all("rss_kb_change" not in group for group in summary["groups"])


def test_a_resident_size_unknown_on_either_side_gives_no_resident_change() -> None:
    known, unknown = [anonymous(0, 64, 10)], [anonymous(0, 64, None)]
    for before, after in ((unknown, known), (known, unknown)):
        summary = summarize_mappings(after, 10, MappingGroups(before, 0.0))
        assert summary["groups"][0]["rss_kb_change"] is None
        assert summary["total"]["rss_kb_change"] is None
        assert summary["groups"][0]["size_kb_change"] == 0


@fuzz
@given(mapping_lists(), mapping_lists(), st.integers(0, 10))
def test_changes_are_now_minus_then_per_group(
    before: list[Mapping], after: list[Mapping], top: int
) -> None:
    then, now = counted_one_by_one(before), counted_one_by_one(after)
    summary = summarize_mappings(after, top, MappingGroups(before, 0.0))
    both_known = all(m.rss_kb is not None for m in [*before, *after])
    for group in summary["groups"]:
        key = (group["kind"], group["name"])
        old = then.get(key, [0, 0, 0])
        assert group["size_kb_change"] == now[key][1] - old[1]
        assert group["rss_kb_change"] == (now[key][2] - old[2] if both_known else None)
    total_then = sum(v[1] for v in then.values())
    assert summary["total"]["size_kb_change"] == summary["total"]["size_kb"] - total_then
