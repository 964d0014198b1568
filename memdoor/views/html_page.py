"""One kill's post-mortem as a single self-contained HTML page.

Nothing is fetched: the styles are inline, the chart is inline SVG, and there
is no script. Every string from a record goes through escape(), since a
process names itself and its files: a name like `<script>` must stay text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from memdoor.views.kills import KillStory, kernel_rss_kb
from memdoor.views.mapping_groups import group_rows
from memdoor.views.postmortem import (
    CGROUP_STAT_KEYS,
    TOP_GROUPS,
    kb,
    killed_by,
    killer,
    last_age,
    rate,
    signed_kb,
)
from memdoor.views.svg_chart import escape, trajectory_svg
from memdoor.views.text import clock, date_and_clock, duration, number, parse_time, section

# Nothing may be loaded from anywhere, even if a record's text got past escaping.
CSP = (
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
)
STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 24px 32px; color: #1d2330; background: #fff; max-width: 1220px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid #dde2ea; padding-bottom: 4px; }
.sub { color: #5a6475; margin: 0 0 12px; }
.facts { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 8px 16px; }
.fact { background: #f5f7fa; border-radius: 6px; padding: 8px 12px; overflow-wrap: anywhere; }
.fact b { display: block; font-size: 12px; color: #5a6475; font-weight: 600; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #eef0f4;
         vertical-align: top; overflow-wrap: anywhere; }
th { font-size: 12px; color: #5a6475; font-weight: 600; white-space: nowrap; }
.k { white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.bar { position: relative; height: 14px; width: 260px; background: #f0f2f6; border-radius: 3px; }
.bar span { position: absolute; top: 0; bottom: 0; }
.bar .before { left: 0; background: #7d93b8; border-radius: 3px 0 0 3px; }
.bar .growth { background: #e0803a; }
.legend span { margin-right: 18px; white-space: nowrap; }
.sw { display: inline-block; width: 18px; height: 4px; vertical-align: middle; margin-right: 6px; }
svg { max-width: 100%; height: auto; font: 12px system-ui, sans-serif; }
svg .axis { stroke: #5a6475; } svg .grid { stroke: #eef0f4; }
svg .tick { fill: #5a6475; }
svg .series { fill: none; stroke-width: 2.2; }
svg .series.cgroup { stroke: #3867b7; } svg .dot.cgroup { fill: #3867b7; }
svg .series.rss { stroke: #2e9e6a; stroke-dasharray: 5 3; } svg .dot.rss { fill: #2e9e6a; }
svg .limit { stroke: #c62828; stroke-width: 2; } svg .limit-label { fill: #c62828; }
svg .threshold { stroke: #d98b1c; stroke-width: 1.5; stroke-dasharray: 6 4; }
svg .threshold-label { fill: #b36f0c; }
svg .crossing { stroke: #d98b1c; stroke-dasharray: 2 3; } svg .crossing-label { fill: #b36f0c; }
svg .kill { stroke: #c62828; stroke-width: 2; } svg .kill-label { fill: #c62828; font-weight: 600; }
svg .kill-rss { fill: #c62828; stroke: #fff; stroke-width: 1.5; }
footer { margin-top: 32px; color: #8a93a3; font-size: 12px; }
"""


def _table(
    table_id: str, headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]
) -> str:
    """rows hold HTML already escaped; numeric columns are right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _fact(name: str, value: str) -> str:
    return f'<div class="fact"><b>{escape(name)}</b>{escape(value)}</div>'


def _facts(story: KillStory) -> str:
    kill = story.kill
    growth = story.growth()
    facts = [
        ("killed at", date_and_clock(story.killed_at)),
        ("told by", killer(story)),
        ("constraint", str(kill.get("constraint") or "?")),
        ("limit", "none" if story.limit_kb is None else kb(story.limit_kb)),
        ("RSS at the kill (kernel log)", kb(kernel_rss_kb(kill))),
        ("threshold", f"{story.threshold_percent or 0:g}% ({story.threshold_base})"),
        (
            "crossed",
            "—"
            if story.crossed_at is None
            else f"{clock(story.crossed_at)}, "
            f"{duration(max(0.0, story.killed_at - story.crossed_at))} before the kill",
        ),
        ("last snapshot", f"{last_age(story)} before the kill"),
        ("growth, last interval", rate(growth.last_interval_kb_s)),
        ("growth, last minute", rate(growth.last_minute_kb_s)),
        (
            "limit reached at that rate in",
            "—" if growth.seconds_to_limit is None else duration(growth.seconds_to_limit),
        ),
        ("OOM cgroup", str(kill.get("oom_memcg") or "?")),
    ]
    return '<div class="facts">' + "".join(_fact(n, v) for n, v in facts) + "</div>"


def _legend() -> str:
    items = [
        ("#3867b7", "cgroup usage"),
        ("#2e9e6a", "RSS"),
        ("#c62828", "limit, OOM kill"),
        ("#d98b1c", "threshold, crossing"),
    ]
    return (
        '<p class="legend">'
        + "".join(
            f'<span><i class="sw" style="background:{colour}"></i>{label}</span>'
            for colour, label in items
        )
        + "</p>"
    )


def _groups(story: KillStory) -> str:
    rows = group_rows(story.last_snapshot, story.earlier_full, TOP_GROUPS)
    if not rows:
        return "<p>No mappings in the last snapshot.</p>"
    largest = max(max(row.rss_kb for row in rows), 1.0)
    cells = []
    for row in rows:
        grown = max(0.0, row.growth_kb or 0.0)
        before = max(0.0, row.rss_kb - grown)
        start, width = before / largest * 100, grown / largest * 100
        bar = (
            f'<div class="bar"><span class="before" style="width:{start:.1f}%"></span>'
            f'<span class="growth" style="left:{start:.1f}%;width:{width:.1f}%"></span></div>'
        )
        growth = "new" if row.new else signed_kb(row.growth_kb)
        cells.append(
            [
                bar,
                escape(kb(row.rss_kb)),
                escape(growth),
                escape(kb(row.size_kb)),
                str(row.count),
                f'<span class="k">{escape(row.kind)}</span>',
                escape(row.name),
            ]
        )
    earlier_at = (
        None if story.earlier_full is None else parse_time(story.earlier_full.get("taken_at"))
    )
    since = (
        "" if earlier_at is None else f" Orange: growth since the snapshot at {clock(earlier_at)}."
    )
    headers = ["", "resident", "growth", "size", "count", "kind", "name"]
    return f'<p class="sub">The largest groups by resident size.{escape(since)}</p>' + _table(
        "mappings", headers, cells, {1, 2, 3, 4}
    )


def _pairs(table_id: str, pairs: Sequence[tuple[str, str]]) -> str:
    return _table(table_id, ["", ""], [[escape(k), escape(v)] for k, v in pairs], set())


def _memory(last: Mapping[str, Any]) -> str:
    memory, oom, process = section(last, "memory"), section(last, "oom"), section(last, "process")
    cmdline = process.get("cmdline")
    pairs = [
        ("name", str(process.get("name"))),
        ("exe", str(process.get("exe"))),
        ("cmdline", " ".join(str(a) for a in cmdline) if isinstance(cmdline, list) else "?"),
        ("started", str(process.get("started_at"))),
        ("taken at", str(last.get("taken_at"))),
    ]
    for key in (
        "rss_kb",
        "rss_anon_kb",
        "rss_file_kb",
        "rss_shmem_kb",
        "pss_kb",
        "uss_kb",
        "swap_kb",
        "page_tables_kb",
        "mem_total_kb",
        "mem_available_kb",
    ):
        pairs.append((key.removesuffix("_kb").replace("_", " "), kb(memory.get(key))))
    pairs.append(("share of MemTotal", f"{memory.get('usage_percent')}%"))
    pairs.append(("oom score, score_adj", f"{oom.get('score')}, {oom.get('score_adj')}"))
    return _pairs("memory", pairs)


def _cgroup(last: Mapping[str, Any]) -> str:
    cgroup = section(last, "cgroup")
    if not cgroup:
        return "<p>No cgroup figures.</p>"
    pairs = [
        ("version", str(cgroup.get("version"))),
        ("path", str(cgroup.get("path"))),
        ("usage", kb(cgroup.get("usage_kb"))),
        ("limit", "none" if cgroup.get("limit_kb") is None else kb(cgroup.get("limit_kb"))),
        ("limit set at", str(cgroup.get("limit_path"))),
        (
            "usage of the limit's cgroup",
            f"{kb(cgroup.get('limit_usage_kb'))} ({cgroup.get('usage_percent')}%)",
        ),
        ("memory.high", "none" if cgroup.get("high_kb") is None else kb(cgroup.get("high_kb"))),
    ]
    stat = section(cgroup, "stat")
    pairs += [
        (f"stat {key}", kb((number(stat.get(key)) or 0) / 1024))
        for key in CGROUP_STAT_KEYS
        if key in stat
    ]
    return _pairs("cgroup", pairs)


def _sockets(last: Mapping[str, Any]) -> str:
    summary = section(last, "connections_summary")
    listed = summary.get("listed") if summary else last.get("connections")
    if not isinstance(listed, list) or not listed:
        return "<p>No sockets.</p>"
    rows = [
        [
            escape(s.get("protocol")),
            escape(s.get("family")),
            escape(s.get("state")),
            escape(f"{s.get('local_address')} {s.get('local_port')}"),
            escape(f"{s.get('remote_address')} {s.get('remote_port')}"),
            escape(s.get("tx_queue")),
            escape(s.get("rx_queue")),
        ]
        for s in listed
        if isinstance(s, dict)
    ]
    return _table(
        "sockets",
        ["protocol", "family", "state", "local", "remote", "tx queue", "rx queue"],
        rows,
        {5, 6},
    )


def _tree(last: Mapping[str, Any]) -> str:
    tree = last.get("tree")
    if not isinstance(tree, list) or not tree:
        return "<p>No parents recorded.</p>"
    rows = [[escape(p.get("pid")), escape(p.get("name"))] for p in tree if isinstance(p, dict)]
    return _table("tree", ["pid", "name"], rows, {0})


def _kill_list(stories: Sequence[KillStory], shown: KillStory) -> str:
    rows = [
        [
            ("▶ " if s is shown else "") + str(s.number),
            escape(date_and_clock(s.killed_at)),
            escape(s.record.get("target")),
            escape(s.record.get("pid")),
            escape(s.name),
            escape(killer(s)),
            escape(s.kill.get("constraint") or "?"),
            escape("none" if s.limit_kb is None else kb(s.limit_kb)),
            escape(last_age(s)),
        ]
        for s in stories
    ]
    headers = [
        "#",
        "killed at",
        "target",
        "pid",
        "name",
        "killer",
        "constraint",
        "limit",
        "last snapshot age",
    ]
    return _table("kills", headers, rows, {0, 3})


def html_page(story: KillStory, stories: Sequence[KillStory]) -> str:
    last = story.last_snapshot
    target, pid = story.record.get("target"), story.record.get("pid")
    title = f"{target} pid {pid} ({story.name}) killed by {killed_by(story.kill)}"
    chart = trajectory_svg(story)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        CSP,
        f"<title>memdoor: {escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">memdoor post-mortem of kill {story.number} of {len(stories)}</p>',
        _facts(story),
        "<h2>Memory before the kill</h2>",
        _legend() + chart if chart else "<p>No figures were recorded before the kill.</p>",
    ]
    if last:
        parts += [
            "<h2>Top mapping groups</h2>",
            _groups(story),
            "<h2>Last snapshot: process and memory</h2>",
            _memory(last),
            "<h2>cgroup</h2>",
            _cgroup(last),
            "<h2>Sockets</h2>",
            _sockets(last),
            "<h2>Parents</h2>",
            _tree(last),
        ]
    else:
        parts.append("<p>No snapshot was taken before the kill.</p>")
    parts += [
        "<h2>Every kill in these records</h2>",
        _kill_list(stories, story),
        "<footer>written by memdoor show</footer></body></html>",
    ]
    return "\n".join(parts) + "\n"
