"""The kills among records, their trajectory, growth and mapping groups; the text chart."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from memdoor.events import Event
from memdoor.views.chart import text_chart
from memdoor.views.kills import find_kills
from memdoor.views.mapping_groups import group_rows
from memdoor.views.text import parse_time, printable
from memdoor.vocabulary import rfc3339

BASE = 1_795_548_600.0


def stamp(epoch: float) -> str:
    return rfc3339(epoch)


def test_the_real_kill_and_its_story(daemon_run: list[dict[str, Any]]) -> None:
    (story,) = find_kills(daemon_run)
    killed = next(r for r in daemon_run if r["event"] == Event.OOM_KILLED)
    assert story.record is killed and story.number == 1 and story.name == "python"
    assert story.limit_kb == 256 * 1024 and story.threshold_base == "cgroup"
    assert story.thresholds_kb() == {"cgroup": 128 * 1024}
    assert story.crossed_at is not None and story.crossed_at < story.killed_at
    assert all(p.at <= story.killed_at for p in story.points)
    assert [p.at for p in story.points] == sorted(p.at for p in story.points)
    # Only the hog's own records: the server's samples in between are another story.
    assert all(r["target"] == "hog" and r["pid"] == killed["pid"] for r in story.history)
    measured = [kb for _at, kb in story.measured()]
    assert measured[-1] > measured[0] >= 128 * 1024 * 0.99
    growth = story.growth()
    assert growth.last_minute_kb_s is not None and growth.last_minute_kb_s > 10 * 1024
    assert growth.seconds_to_limit is not None and growth.seconds_to_limit < 10
    rows = group_rows(story.last_snapshot, story.earlier_full, 10)
    assert rows[0].name == "[anonymous]"
    crossing = next(r for r in story.history if r["event"] == Event.THRESHOLD_CROSSED)
    if crossing["taken_at"] == story.last_snapshot["taken_at"]:
        # The kill came before a newer snapshot was kept: nothing earlier to compare with.
        assert story.earlier_full is None and rows[0].growth_kb is None
    else:
        assert story.earlier_full is crossing
        assert rows[0].growth_kb is not None
        assert rows[0].growth_kb > 16 * 1024, "the workload grew its anonymous memory"


def full_snapshot(at: float, mappings: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "timestamp": stamp(at),
        "taken_at": stamp(at),
        "event": Event.SNAPSHOT.value,
        "target": "t",
        "pid": 5,
        "mappings": mappings,
    }


def test_groups_of_full_snapshots_and_what_is_new() -> None:
    before = full_snapshot(BASE, [{"path": "", "size_kb": 8, "rss_kb": 4}])
    after = full_snapshot(
        BASE + 1,
        [
            {"path": "", "size_kb": 8, "rss_kb": 6},
            {"path": "", "size_kb": 8, "rss_kb": 6},
            {"path": "/lib/x.so", "size_kb": 4, "rss_kb": 4},
            {"path": "[stack:12]", "size_kb": 4, "rss_kb": 1},
        ],
    )
    rows = group_rows(after, before, 10)
    assert [(r.kind, r.name, r.count, r.rss_kb, r.growth_kb, r.new) for r in rows] == [
        ("anonymous", "[anonymous]", 2, 12, 8, False),
        ("file", "/lib/x.so", 1, 4, 4, True),
        ("special", "[stack]", 1, 1, 1, True),
    ]
    summary = {"mappings_summary": {"groups": [], "omitted": {"groups": 3}}}
    unknown = group_rows(after, summary, 10)
    assert [r.growth_kb for r in unknown] == [None, None, None], "left out is not new"


def test_a_pid_reused_after_an_end_starts_a_new_story() -> None:
    records = [
        {"timestamp": stamp(BASE), "event": Event.SAMPLE.value, "target": "t", "pid": 5},
        {"timestamp": stamp(BASE + 1), "event": Event.TARGET_GONE.value, "target": "t", "pid": 5},
        {"timestamp": stamp(BASE + 2), "event": Event.SAMPLE.value, "target": "t", "pid": 5},
        {"timestamp": stamp(BASE + 3), "event": Event.OOM_KILLED.value, "target": "t", "pid": 5},
    ]
    (story,) = find_kills(records)
    assert [parse_time(r["timestamp"]) for r in story.history] == [BASE + 2]
    assert story.killed_at == BASE + 3 and text_chart(story, ascii_only=False) == []


figures = st.lists(
    st.tuples(st.floats(0, 3600), st.integers(0, 2**40), st.integers(0, 2**40)),
    min_size=1,
    max_size=60,
)


@given(
    points=figures,
    limit=st.one_of(st.none(), st.integers(1, 2**40)),
    threshold=st.integers(1, 99),
    ascii_only=st.booleans(),
)
def test_the_chart_reads_at_80_columns_whatever_the_figures(
    points: list[tuple[float, int, int]], limit: Any, threshold: int, ascii_only: bool
) -> None:
    cgroup = {"limit_kb": limit, "limit_usage_kb": 0}
    records: list[dict[str, Any]] = []
    for offset, rss, usage in sorted(points):
        records.append(
            {
                **full_snapshot(BASE + offset, []),
                "memory": {"rss_kb": rss, "mem_total_kb": 2**41},
                "cgroup": {**cgroup, "limit_usage_kb": usage},
                "threshold_percent": threshold,
            }
        )
    records.append(
        {
            "timestamp": stamp(BASE + 3601),
            "event": Event.OOM_KILLED.value,
            "target": "t",
            "pid": 5,
            "threshold_percent": threshold,
            "kill": {"killed_at": stamp(BASE + 3601)},
        }
    )
    (story,) = find_kills(records)
    lines = text_chart(story, ascii_only)
    assert len(lines) == 15
    assert all(len(line) <= 80 for line in lines)
    assert lines[11].rstrip().endswith("X" if ascii_only else "✕")
    if ascii_only:
        assert all(line.isascii() for line in lines)
    assert all(printable(line) == line for line in lines)
