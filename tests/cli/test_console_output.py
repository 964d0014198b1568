"""The console view of `memdoor run` and `memdoor demo` on a real pseudo-terminal, and the
JSON lines that a pipe and --format json keep getting byte for byte."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from memdoor.cli.main import main
from memdoor.config import load_config
from memdoor.lab.python_child import IMPORT_ROOT, module_command
from memdoor.outputs import build_dispatcher
from memdoor.render.ecs import ecs_formatter
from memdoor.sinks.stdout import StdoutSink, StdoutView
from memdoor.views.console import PID_WIDTH, TARGET_WIDTH
from memdoor.vocabulary import compact_json
from tests.record_schema import validate_record
from tests.terminal import on_a_terminal
from tests.test_watcher import one_and_a_half_percent_of_ram_mb

ANSI = re.compile(r"\x1b\[[0-9;]*m")
EVENT_AT = 12 + 1 + 9 + 1 + TARGET_WIDTH + 1 + PID_WIDTH + 1
RECORD = {
    "timestamp": "2026-11-24T19:30:18.123Z",
    "level": "warning",
    "event": "sample",
    "target": "web",
    "pid": 4242,
    "schema_version": 1,
    "message": "web pid 4242 RSS 1.0 GiB = 4.2% of MemTotal >= 4%",
    "measured_base": "system",
    "usage_percent": 4.2,
}


def held_above_one_percent(spawn_workload: Any) -> int:
    """A process above the lowest threshold (1% of MemTotal), so it is reported."""
    return int(spawn_workload("--touch-mb", one_and_a_half_percent_of_ram_mb()).pid)


def write_config(tmp_path: Path, pid: int, extra: str = "") -> Path:
    path = tmp_path / "memdoor.toml"
    path.write_text(
        f'{extra}[[target]]\nname = "held"\npid = {pid}\nthreshold = 1\ninterval = 0.5\n'
    )
    return path


def test_run_on_a_terminal_prints_short_aligned_lines(spawn_workload, tmp_path: Path) -> None:
    config = write_config(tmp_path, held_above_one_percent(spawn_workload))
    for no_color in (None, "1"):
        shown = on_a_terminal(["run", "--config", str(config)], no_color, stop_after=2.5)
        lines = shown.splitlines()
        assert ("\x1b[" in shown) is (no_color is None)
        plain = [ANSI.sub("", line) for line in lines]
        assert not any("{" in line for line in plain), shown
        events = [line[EVENT_AT:].split(" ", 1)[0] for line in plain]
        assert events[0] == "daemon_started" and events[-1] == "daemon_stopping", shown
        assert "target_found" in events and "threshold_crossed" in events
        assert all(len(line) < 200 for line in plain)
        crossed = plain[events.index("threshold_crossed")]
        assert "held" in crossed and "RSS" in crossed and ">= 1%" in crossed


def test_run_with_format_json_on_a_terminal_prints_the_records(
    spawn_workload, tmp_path: Path
) -> None:
    config = write_config(tmp_path, held_above_one_percent(spawn_workload))
    shown = on_a_terminal(
        ["run", "--format", "json", "--config", str(config)], None, stop_after=2.5
    )
    records = [json.loads(line) for line in shown.splitlines()]
    for record in records:
        validate_record(record)
    assert [r["event"] for r in records][:: len(records) - 1] == [
        "daemon_started",
        "daemon_stopping",
    ]


def test_format_console_on_a_pipe_is_the_view_without_colour(
    spawn_workload, tmp_path: Path
) -> None:
    config = write_config(tmp_path, held_above_one_percent(spawn_workload))
    daemon = subprocess.Popen(
        module_command("memdoor", "run", "--format", "console", "--config", str(config)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=IMPORT_ROOT,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        out, err = daemon.communicate(timeout=2.5)
    except subprocess.TimeoutExpired:
        daemon.terminate()
        out, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert "\x1b" not in out and "{" not in out
    assert "daemon_started" in out.splitlines()[0] and "threshold_crossed" in out


def dispatched(tmp_path: Path, stream: Any, view: StdoutView, extra: str = "") -> None:
    config = load_config(str(write_config(tmp_path, os.getpid(), extra)))
    dispatcher = build_dispatcher(config, StdoutSink(stream, view=view), None)
    dispatcher.emit(compact_json(RECORD), dict(RECORD))
    assert dispatcher.stdout is not None
    dispatcher.stdout.close(5)


def test_a_pipe_and_format_json_get_the_record_byte_for_byte(tmp_path: Path) -> None:
    expected = (compact_json(RECORD) + "\n").encode()
    read_end, write_end = os.pipe()
    with open(write_end, "w") as pipe:
        dispatched(tmp_path, pipe, "auto")
    with open(read_end, "rb") as got:
        assert got.read() == expected
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as terminal:
            dispatched(tmp_path, terminal, "json")
        os.close(slave)
        slave = -1
        received = os.read(master, 65536)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    # The terminal's line discipline turns the newline into \r\n, nothing else.
    assert received == expected[:-1] + b"\r\n"


def test_format_json_keeps_the_configured_ecs_documents(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    with open(write_end, "w") as pipe:
        dispatched(tmp_path, pipe, "json", '[sinks.stdout]\nformat = "ecs"\n')
    with open(read_end, "rb") as got:
        line = got.read().decode()
    assert line == ecs_formatter(socket.gethostname())(RECORD) + "\n"


def test_an_in_memory_stream_is_no_terminal(tmp_path: Path) -> None:
    stream = io.StringIO()
    dispatched(tmp_path, stream, "auto")
    assert stream.getvalue() == compact_json(RECORD) + "\n"
    stream = io.StringIO()
    dispatched(tmp_path, stream, "console")
    assert stream.getvalue().split()[2:6] == ["web", "4242", "sample", "RSS"]


@pytest.mark.parametrize("command", ["run", "demo"])
def test_help_explains_format(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--format {auto,json,console}" in text
    assert "NO_COLOR" in text and "console on a terminal and json anywhere else" in text


def test_demo_help_says_what_root_adds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "OOM kill" in text and "post-mortem" in text and "root" in text


def test_demo_rejects_an_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--format", "yaml"]) == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err
