"""`memdoor show` on the records of a real daemon run with a real OOM kill, from a file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from memdoor.events import Event
from memdoor.views.text import duration
from tests.views.conftest import run_show


def the_kill(daemon_run: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in daemon_run if r["event"] == Event.OOM_KILLED)


def test_the_kill_list_names_the_kill(records_file: Path, daemon_run: list[dict[str, Any]]) -> None:
    shown = run_show([str(records_file), "--kills"])
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    assert header.split() == [
        "#",
        "killed",
        "at",
        "target",
        "pid",
        "name",
        "killer",
        "constraint",
        "limit",
        "last",
        "snapshot",
        "age",
    ]
    kill = the_kill(daemon_run)
    cells = row.split()
    assert cells[0] == "1" and cells[3:6] == ["hog", str(kill["pid"]), "python"]
    assert cells[6] == "kmsg+cgroup_counter" and cells[7] == "CONSTRAINT_MEMCG"
    assert " ".join(cells[8:10]) == "256.0 MiB"
    assert row.endswith(duration(kill["last_snapshot"]["age_ms"] / 1000))


def test_the_post_mortem_tells_the_story(
    records_file: Path, daemon_run: list[dict[str, Any]]
) -> None:
    shown = run_show([str(records_file), "--kill", "1"])
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    kill = the_kill(daemon_run)
    assert text.startswith(f"Kill 1 of 1: hog pid {kill['pid']} (python) killed by the OOM killer")
    assert "constraint CONSTRAINT_MEMCG" in text
    assert "threshold 50% (cgroup), crossed at" in text
    chart = text[text.index("Trajectory\n") : text.index("  growth ")].splitlines()[1:]
    assert len(chart) == 15 and chart[0].startswith(" 256.0 MiB┤"), chart
    assert "128.0 MiB┤" in chart[5], "the threshold's row is labelled"
    assert chart[11].rstrip().endswith("✕"), "the kill is the last column"
    assert "▲" in chart[11], "the crossing is marked"
    growth = next(line for line in text.splitlines() if line.startswith("  growth "))
    # The last interval can be a few milliseconds of a loaded machine, in which the hog
    # did not grow; over the minute it grew by MiB/s, to its limit.
    assert re.fullmatch(
        r"  growth ([+-][\d.]+ [KMG]iB/s|0/s) over the last interval, \+[\d.]+ MiB/s over the last "
        r"minute(; the limit .* away at that rate)?",
        growth,
    ), growth
    groups = text[text.index("Top mapping groups") :].splitlines()
    anonymous = groups[2].split()
    assert anonymous[0] == "anonymous" and anonymous[-1] == "[anonymous]", groups[2]
    crossing = next(
        r for r in daemon_run if r["event"] == Event.THRESHOLD_CROSSED and r["target"] == "hog"
    )
    if crossing["taken_at"] != kill["last_snapshot"]["taken_at"]:
        assert "growth since the snapshot at" in groups[0]
        assert anonymous[3].startswith("+") and anonymous[4] == "MiB", "the heap grew by MiB"
    else:
        assert groups[0] == "Top mapping groups by resident size" and anonymous[3] == "?"
    assert "Sockets: 9 (" in text and "LISTEN" in text
    assert "Parents: python " in text
    for line in text.splitlines():
        assert line.isprintable(), line


def test_ascii_when_the_terminal_cannot_take_more(records_file: Path) -> None:
    shown = run_show([str(records_file), "--kill", "latest"], env={"PYTHONIOENCODING": "ascii"})
    assert shown.returncode == 0, shown.stderr
    chart = shown.stdout[shown.stdout.index("Trajectory") : shown.stdout.index("  growth ")]
    assert chart.isascii() and "#" in chart and "X" in chart
    assert run_show([str(records_file), "--kill", "latest", "--ascii"]).stdout == shown.stdout


def test_filters_by_target_event_and_time(
    records_file: Path, daemon_run: list[dict[str, Any]]
) -> None:
    hog = run_show([str(records_file), "--target", "hog", "--event", "sample", "-e", "oom_killed"])
    lines = hog.stdout.splitlines()
    expected = [
        r for r in daemon_run if r["target"] == "hog" and r["event"] in ("sample", "oom_killed")
    ]
    assert len(lines) == len(expected) > 2
    assert all(" hog " in line for line in lines)
    kill = the_kill(daemon_run)
    until = run_show([str(records_file), f"--until={kill['timestamp']}"]).stdout.splitlines()
    since = run_show([str(records_file), "--since", kill["timestamp"]]).stdout.splitlines()
    same_moment = [r for r in daemon_run if r["timestamp"] == kill["timestamp"]]
    assert len(until) + len(since) == len(daemon_run) + len(same_moment), "both include it"
    assert "oom_killed" in until[-1] and "oom_killed" in since[0]
    recent = run_show([str(records_file), "--since=-1d", "--until=+1h"]).stdout.splitlines()
    assert len(recent) == len(daemon_run)
    assert run_show([str(records_file), "--since=+1h"]).stdout == ""


def test_stdin_and_damaged_lines(records_file: Path, daemon_run: list[dict[str, Any]]) -> None:
    text = records_file.read_text()
    damaged = "not json\n" + text + '{"event": 3}\n\n[1, 2]\n'
    shown = run_show(["-", "--kills"], stdin=damaged)
    assert shown.returncode == 0
    assert shown.stdout.splitlines()[1].startswith("1  ")
    assert shown.stderr == (
        "memdoor show: skipped 3 lines that are not memdoor records "
        "(damaged, or journal entries in the ECS format)\n"
    )


def test_what_cannot_be_shown_is_said(records_file: Path, tmp_path: Path) -> None:
    missing = run_show([str(tmp_path / "nope.jsonl")])
    assert missing.returncode == 66
    assert (
        missing.stderr
        == f"memdoor show: cannot read {tmp_path / 'nope.jsonl'}: No such file or directory\n"
    )
    beyond = run_show([str(records_file), "--kill", "2"])
    assert (beyond.returncode, beyond.stderr) == (
        1,
        "memdoor show: there is no kill 2: the records hold 1\n",
    )
    none = tmp_path / "none.jsonl"
    none.write_text(json.dumps({"timestamp": "2026-01-01T00:00:00.000Z", "event": "x"}) + "\n")
    assert run_show([str(none), "--kills"]).stdout == "no OOM kills among the records read\n"
    assert run_show([str(none), "--kill", "latest"]).returncode == 1
    bad_time = run_show([str(records_file), "--since", "next tuesday"])
    assert bad_time.returncode == 2 and "--since 'next tuesday': not a time" in bad_time.stderr
    assert run_show([str(records_file), "--kill", "0"]).returncode == 2
    unwritable = run_show([str(records_file), "--html", str(tmp_path / "no" / "dir.html")])
    assert unwritable.returncode == 74 and "cannot write" in unwritable.stderr
