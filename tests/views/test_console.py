"""The console view on a real run's records, and on hostile text."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from memdoor.events import Event
from memdoor.views.console import EVENT_WIDTH, PID_WIDTH, TARGET_WIDTH, ConsoleView, wants_colour

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# time, space, "[level  ]", space: where the target column starts.
TARGET_AT = 12 + 1 + 9 + 1
EVENT_AT = TARGET_AT + TARGET_WIDTH + 1 + PID_WIDTH + 1
FIGURES_AT = EVENT_AT + EVENT_WIDTH + 1


def test_every_record_is_one_aligned_line(daemon_run: list[dict[str, Any]]) -> None:
    view = ConsoleView(colors=False)
    for record in daemon_run:
        line = view.line(record)
        assert "\n" not in line and "\x1b" not in line
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", line[:12]), line
        assert line[13:23] == f"[{record['level']:<7}] ", line
        pid = "-" if record["pid"] is None else str(record["pid"])
        assert line[EVENT_AT - 1 - PID_WIDTH : EVENT_AT - 1] == pid.rjust(PID_WIDTH), line
        assert line[EVENT_AT:FIGURES_AT].rstrip() == record["event"], line
        assert len(line) < 200, line


def test_measured_records_show_their_figures(daemon_run: list[dict[str, Any]]) -> None:
    view = ConsoleView(colors=False)
    crossed = next(
        r for r in daemon_run if r["event"] == Event.THRESHOLD_CROSSED and r["target"] == "hog"
    )
    figures = view.line(crossed)[FIGURES_AT:]
    assert figures.startswith("cgroup ") and ">= 50%" in figures, figures
    assert "of 256.0 MiB" in figures and "RSS " in figures
    killed = next(r for r in daemon_run if r["event"] == Event.OOM_KILLED)
    line = view.line(killed)[FIGURES_AT:]
    assert "killed by the OOM killer" in line and "limit 256.0 MiB" in line, line
    sample = next(r for r in daemon_run if r["event"] == Event.SAMPLE and r["target"] == "hog")
    assert " old: RSS " in view.line(sample), "a sample's snapshot figures say their age"


def test_colour_codes_frame_the_level_and_only_when_asked(daemon_run: list[dict[str, Any]]) -> None:
    coloured, plain = ConsoleView(colors=True), ConsoleView(colors=False)
    for record in daemon_run:
        line = coloured.line(record)
        assert "\x1b[" in line
        assert ANSI.sub("", line) == plain.line(record)
    killed = next(r for r in daemon_run if r["event"] == Event.OOM_KILLED)
    assert "\x1b[31m" in coloured.line(killed), "errors are red"


def test_no_color_and_dumb_terminals_and_pipes_get_no_colour() -> None:
    assert wants_colour(True, {"TERM": "xterm-256color"})
    assert not wants_colour(True, {"TERM": "xterm", "NO_COLOR": "1"})
    assert wants_colour(True, {"TERM": "xterm", "NO_COLOR": ""}), "empty NO_COLOR is unset"
    assert not wants_colour(True, {"TERM": "dumb"})
    assert not wants_colour(False, {"TERM": "xterm"})


hostile_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "L", "P", "Zs"]), max_size=40
)


@given(target=hostile_text, message=hostile_text, name=hostile_text)
def test_hostile_text_cannot_drive_the_terminal(target: str, message: str, name: str) -> None:
    """No escape, newline or bidi override from a record reaches the terminal."""
    records = [
        {
            "timestamp": "2026-11-24T19:30:18.905Z",
            "level": "info",
            "event": "target_found",
            "target": target,
            "pid": 7,
            "message": message,
        },
        {
            "timestamp": "2026-11-24T19:30:18.905Z",
            "level": "error",
            "event": Event.OOM_KILLED.value,
            "target": target,
            "pid": 7,
            "message": message,
            "kill": {"name": name},
        },
    ]
    for record in records:
        for colors in (False, True):
            shown = ANSI.sub("", ConsoleView(colors).line(record))
            assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", shown), shown


def test_a_record_missing_its_keys_still_gets_a_line() -> None:
    line = ConsoleView(colors=False).line({"event": "x"})
    assert line.startswith("??:??:??.???") and "x" in line


def growing_sample(per_s: Any, seconds_to_limit: Any) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-24T19:30:18.123Z",
        "level": "warning",
        "event": "sample",
        "target": "web",
        "pid": 4242,
        "measured_base": "cgroup",
        "usage_percent": 81.0,
        "threshold_percent": 50,
        "growth": {
            "last_interval_kb_per_s": per_s,
            "last_interval_s": 0.5,
            "last_minute_kb_per_s": per_s,
            "last_minute_s": 42.0,
            "limit_kb": 131072,
            "seconds_to_limit": seconds_to_limit,
        },
    }


def test_a_growing_sample_says_how_fast_and_when_the_limit_comes() -> None:
    line = ConsoleView(colors=False).line(growing_sample(38400.0, 2.5))
    assert line.endswith("cgroup 81% >= 50%, +37.5 MiB/s over 42.0 s, limit in 2.5 s")


def test_a_sample_that_does_not_grow_says_nothing_of_growth() -> None:
    for per_s, left in ((0.0, None), (None, None), (-2048.0, None)):
        line = ConsoleView(colors=False).line(growing_sample(per_s, left))
        assert "limit in" not in line
        assert ("/s" in line) is (per_s == -2048.0)


def test_a_kill_by_systemd_oomd_says_so_and_why() -> None:
    record = {
        "timestamp": "2026-11-24T19:30:18.123Z",
        "level": "error",
        "event": "oom_killed",
        "target": "squeezed",
        "pid": 4242,
        "kill": {"killer": "systemd-oomd", "oomd": {"reason": "memory-pressure"}},
        "process": {"name": "perl"},
        "last_snapshot": {"age_ms": 300},
    }
    line = ConsoleView(colors=False).line(record)
    assert "perl killed by systemd-oomd (memory-pressure)" in line, line
    record["kill"] = {"killer": "kernel", "constraint": "CONSTRAINT_MEMCG"}
    line = ConsoleView(colors=False).line(record)
    assert "perl killed by the OOM killer (CONSTRAINT_MEMCG)" in line, line
