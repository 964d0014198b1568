"""`python -m memdoor show FILE` on a real pseudo-terminal: what a person sees."""

from __future__ import annotations

import re
from pathlib import Path

from memdoor.views.console import PID_WIDTH, TARGET_WIDTH
from tests.terminal import on_a_terminal
from tests.views.conftest import run_show

ANSI = re.compile(r"\x1b\[[0-9;]*m")
EVENT_AT = 12 + 1 + 9 + 1 + TARGET_WIDTH + 1 + PID_WIDTH + 1


def test_a_terminal_gets_aligned_coloured_lines(records_file: Path) -> None:
    shown = on_a_terminal(["show", str(records_file)], no_color=None)
    lines = shown.splitlines()
    assert len(lines) == len(records_file.read_text().splitlines())
    assert all("\x1b[" in line for line in lines)
    assert any("\x1b[31m" in line and "oom_killed" in line for line in lines)
    plain = [ANSI.sub("", line) for line in lines]
    events = [line[EVENT_AT:].split(" ", 1)[0] for line in plain]
    assert "oom_killed" in events and "threshold_crossed" in events and "sample" in events
    # Aligned: every event name starts in the same column, each pid ends just before it.
    assert all(line[EVENT_AT - 1] == " " and line[EVENT_AT] != " " for line in plain)
    assert all(line[EVENT_AT - 2] != " " for line in plain), "the pid column is right-aligned"


def test_no_color_on_a_terminal_gets_the_same_text_without_codes(records_file: Path) -> None:
    coloured = on_a_terminal(["show", str(records_file)], no_color=None)
    plain = on_a_terminal(["show", str(records_file)], no_color="1")
    assert "\x1b" not in plain
    assert plain == ANSI.sub("", coloured)


def test_a_pipe_gets_no_colour_unless_asked(records_file: Path) -> None:
    piped = run_show([str(records_file)], env={"TERM": "xterm-256color"})
    assert piped.returncode == 0 and piped.stderr == ""
    assert "\x1b" not in piped.stdout
    forced = run_show([str(records_file), "--color", "always"])
    assert "\x1b[" in forced.stdout
    assert ANSI.sub("", forced.stdout) == piped.stdout


def test_the_post_mortem_on_a_terminal_reads_at_80_columns(records_file: Path) -> None:
    shown = on_a_terminal(["show", str(records_file), "--kill", "latest"], no_color=None)
    chart = shown[shown.index("Trajectory\n") : shown.index("growth")]
    assert "█" in chart and "✕" in chart and "━" in chart
    assert all(len(line) <= 80 for line in chart.splitlines())
