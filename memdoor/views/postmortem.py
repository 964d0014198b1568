"""The kill list and one kill's post-mortem, as text for a terminal.

The post-mortem answers, in order: what was killed, by whom and when; how its
memory got there (the trajectory and how fast it grew); and what it looked
like at the last snapshot (memory, the mapping groups that hold it and how
they grew, sockets, its parents, its cgroup).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from memdoor.messages import human_kb
from memdoor.views.chart import text_chart
from memdoor.views.kills import KillStory, kernel_rss_kb
from memdoor.views.mapping_groups import group_rows
from memdoor.views.text import (
    clock,
    date_and_clock,
    duration,
    number,
    parse_time,
    printable,
    section,
    table,
)

TOP_GROUPS = 10
TOP_SOCKETS = 10
# memory.stat figures in bytes worth a line: v2 first, then v1's names.
CGROUP_STAT_KEYS = (
    "anon",
    "file",
    "kernel",
    "shmem",
    "sock",
    "slab",
    "rss",
    "cache",
    "mapped_file",
    "swap",
)


def kb(value: Any) -> str:
    figure = number(value)
    return "?" if figure is None else human_kb(int(figure))


def signed_kb(value: Optional[float]) -> str:
    if value is None:
        return "?"
    if round(value) == 0:
        return "0"
    return ("+" if value > 0 else "-") + human_kb(int(abs(value)))


def rate(kb_per_s: Optional[float]) -> str:
    return "?" if kb_per_s is None else f"{signed_kb(kb_per_s)}/s"


def killer(story: KillStory) -> str:
    sources = story.kill.get("sources")
    return "+".join(printable(s) for s in sources) if isinstance(sources, list) else "?"


def killed_by(kill: Mapping[str, Any]) -> str:
    """Who killed: the kernel's OOM killer, or systemd-oomd and why."""
    if kill.get("killer") != "systemd-oomd":
        return "the OOM killer"
    oomd = kill.get("oomd")
    reason = oomd.get("reason") if isinstance(oomd, Mapping) else None
    return "systemd-oomd" + (f" ({printable(reason)})" if reason else "")


def last_age(story: KillStory) -> str:
    age = number(story.last_snapshot.get("age_ms"))
    return "no snapshot" if age is None else duration(age / 1000)


def kill_list(stories: list[KillStory]) -> str:
    rows = [
        [
            str(story.number),
            date_and_clock(story.killed_at),
            printable(story.record.get("target")),
            printable(story.record.get("pid")),
            printable(story.name),
            killer(story),
            printable(story.kill.get("constraint") or "?"),
            "none" if story.limit_kb is None else kb(story.limit_kb),
            last_age(story),
        ]
        for story in stories
    ]
    headers = ["#", "killed at", "target", "pid", "name", "killer", "constraint", "limit"]
    lines = table([*headers, "last snapshot age"], rows, right=frozenset({0, 3, 7, 8}))
    return "\n".join(lines) + "\n"


def _heading(story: KillStory, total: int) -> list[str]:
    kill, target, pid = story.kill, story.record.get("target"), story.record.get("pid")
    lines = [
        f"Kill {story.number} of {total}: {printable(target)} pid {printable(pid)} "
        f"({printable(story.name)}) killed by {killed_by(kill)} at "
        f"{date_and_clock(story.killed_at)}",
        f"  told by {killer(story)}; constraint {printable(kill.get('constraint') or '?')}"
        + (f"; OOM cgroup {printable(kill['oom_memcg'])}" if kill.get("oom_memcg") else ""),
    ]
    rss = kernel_rss_kb(kill)
    if rss is not None:
        lines.append(
            f"  at the kill (kernel log): RSS {kb(rss)} = anon {kb(kill.get('anon_rss_kb'))} "
            f"+ file {kb(kill.get('file_rss_kb'))} + shmem {kb(kill.get('shmem_rss_kb'))}; "
            f"total vm {kb(kill.get('total_vm_kb'))}, oom_score_adj "
            f"{printable(kill.get('oom_score_adj'))}"
        )
    threshold = f"  threshold {story.threshold_percent or 0:g}% ({printable(story.threshold_base)})"
    if story.crossed_at is not None:
        before = duration(max(0.0, story.killed_at - story.crossed_at))
        threshold += f", crossed at {clock(story.crossed_at)}, {before} before the kill"
    lines.append(threshold)
    return lines


def _trajectory(story: KillStory, ascii_only: bool) -> list[str]:
    chart = text_chart(story, ascii_only)
    if not chart:
        return ["", "Trajectory: no figures were recorded before the kill"]
    growth = story.growth()
    line = (
        f"  growth {rate(growth.last_interval_kb_s)} over the last interval, "
        f"{rate(growth.last_minute_kb_s)} over the last minute"
    )
    if growth.seconds_to_limit is not None:
        line += f"; the limit {duration(growth.seconds_to_limit)} away at that rate"
    return ["", "Trajectory", *chart, line]


def _memory(last: Mapping[str, Any]) -> list[str]:
    memory = section(last, "memory")
    if not memory:
        return []
    return [
        f"  memory: RSS {kb(memory.get('rss_kb'))} (anon {kb(memory.get('rss_anon_kb'))}, "
        f"file {kb(memory.get('rss_file_kb'))}, shmem {kb(memory.get('rss_shmem_kb'))}), "
        f"PSS {kb(memory.get('pss_kb'))}, USS {kb(memory.get('uss_kb'))}, "
        f"swap {kb(memory.get('swap_kb'))}, page tables {kb(memory.get('page_tables_kb'))}",
        f"          {printable(memory.get('usage_percent'))}% of MemTotal "
        f"{kb(memory.get('mem_total_kb'))} ({kb(memory.get('mem_available_kb'))} available)",
    ]


def _cgroup(last: Mapping[str, Any]) -> list[str]:
    cgroup = section(last, "cgroup")
    if not cgroup:
        return []
    line = (
        f"  cgroup v{printable(cgroup.get('version'))} {printable(cgroup.get('path'))}: "
        f"usage {kb(cgroup.get('usage_kb'))}"
    )
    if cgroup.get("limit_kb") is not None:
        line += (
            f", limit {kb(cgroup.get('limit_kb'))} ({printable(cgroup.get('usage_percent'))}% "
            f"used, set at {printable(cgroup.get('limit_path'))})"
        )
    stat = section(cgroup, "stat")
    parts = [
        f"{key} {kb((number(stat.get(key)) or 0) / 1024)}"
        for key in CGROUP_STAT_KEYS
        if key in stat
    ]
    lines = [line]
    if parts:
        lines.append("          made of " + ", ".join(parts))
    return lines


def _process(last: Mapping[str, Any]) -> list[str]:
    process, oom = section(last, "process"), section(last, "oom")
    cmdline = process.get("cmdline")
    argv = " ".join(printable(a) for a in cmdline) if isinstance(cmdline, list) else "?"
    return [
        f"  process: {printable(process.get('name'))}, exe {printable(process.get('exe'))}, "
        f"started {printable(process.get('started_at'))}",
        f"  cmdline: {argv[:200]}" + ("…" if len(argv) > 200 else ""),
        f"  oom score {printable(oom.get('score'))}, score_adj {printable(oom.get('score_adj'))}",
    ]


def _groups(story: KillStory) -> list[str]:
    rows = group_rows(story.last_snapshot, story.earlier_full, TOP_GROUPS)
    if not rows:
        return []
    earlier_at = (
        None if story.earlier_full is None else parse_time(story.earlier_full.get("taken_at"))
    )
    since = "" if earlier_at is None else f", growth since the snapshot at {clock(earlier_at)}"
    cells = [
        [
            printable(row.kind),
            kb(row.rss_kb),
            "new" if row.new else signed_kb(row.growth_kb),
            kb(row.size_kb),
            str(row.count),
            printable(row.name),
        ]
        for row in rows
    ]
    headers = ["kind", "resident", "growth", "size", "count", "name"]
    body = table(headers, cells, right=frozenset({1, 2, 3, 4}))
    return ["", f"Top mapping groups by resident size{since}", *("  " + line for line in body)]


def _address(address: Any, port: Any) -> str:
    text = printable(address)
    return f"[{text}]:{printable(port)}" if ":" in text else f"{text}:{printable(port)}"


def _sockets(last: Mapping[str, Any]) -> list[str]:
    summary = section(last, "connections_summary")
    listed = summary.get("listed") if summary else last.get("connections")
    if not isinstance(listed, list):
        return []
    total = summary.get("total", len(listed)) if summary else len(listed)
    by_state = section(summary, "by_state")
    counts = ", ".join(f"{printable(k)} {printable(v)}" for k, v in by_state.items())
    rows = [
        [
            f"{printable(s.get('protocol'))}{'6' if s.get('family') == 6 else ''}",
            printable(s.get("state")),
            _address(s.get("local_address"), s.get("local_port")),
            _address(s.get("remote_address"), s.get("remote_port")),
        ]
        for s in listed[:TOP_SOCKETS]
        if isinstance(s, dict)
    ]
    lines = ["", f"Sockets: {printable(total)}" + (f" ({counts})" if counts else "")]
    if rows:
        lines += ["  " + line for line in table(["proto", "state", "local", "remote"], rows)]
    return lines


def _tree(last: Mapping[str, Any]) -> list[str]:
    tree = last.get("tree")
    if not isinstance(tree, list) or not tree:
        return []
    chain = " < ".join(
        f"{printable(p.get('name'))} {printable(p.get('pid'))}" for p in tree if isinstance(p, dict)
    )
    return ["", f"Parents: {chain}"]


def _problems(last: Mapping[str, Any]) -> list[str]:
    problems = last.get("problems")
    if not isinstance(problems, list) or not problems:
        return []
    return ["", "Could not read:"] + [
        f"  {printable(p.get('what'))}: {printable(p.get('reason'))} {printable(p.get('detail'))}"
        for p in problems
        if isinstance(p, dict)
    ]


def postmortem(story: KillStory, total: int, ascii_only: bool) -> str:
    last = story.last_snapshot
    lines = _heading(story, total) + _trajectory(story, ascii_only)
    if not last:
        lines += ["", "No snapshot was taken before the kill."]
    else:
        taken = parse_time(last.get("taken_at"))
        when = "" if taken is None else f" ({clock(taken)}, {last_age(story)} before the kill)"
        lines += ["", f"Last snapshot{when}"]
        lines += _process(last) + _memory(last) + _cgroup(last)
        lines += _groups(story) + _sockets(last) + _tree(last) + _problems(last)
    return "\n".join(lines) + "\n"
