"""`memdoor demo` as a newcomer runs it: as root it ends with a real OOM kill in a
temporary memory cgroup and the post-mortem of its own run, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from memdoor.cli.main import main
from memdoor.collect.cgroup import find_cgroup_mounts, memory_cgroup_of
from memdoor.collect.reading import Unreadable
from memdoor.lab.python_child import IMPORT_ROOT, module_command
from tests.record_schema import validate_record
from tests.terminal import on_a_terminal

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Enough for the kill at the default pace on a slow machine.
SECONDS = "8"


def lab_cgroups() -> set[str]:
    """The temporary cgroups (memdoor.lab.memory_cgroup) under this process's own."""
    layout = find_cgroup_mounts()
    if isinstance(layout, Unreadable) or os.geteuid() != 0:
        pytest.skip("the demo's OOM kill needs root and a memory cgroup")
    own = memory_cgroup_of(os.getpid(), layout)
    if isinstance(own, Unreadable):
        pytest.skip(f"no memory cgroup of our own: {own.detail}")
    return {name for name in os.listdir(own.directory) if name.startswith("memdoor-lab-")}


def test_demo_as_root_on_a_terminal_ends_with_a_kill_and_its_post_mortem() -> None:
    before = lab_cgroups()
    shown = ANSI.sub("", on_a_terminal(["demo", "--seconds", SECONDS], None, timeout=120))
    lines = shown.splitlines()
    killed = [line for line in lines if " oom_killed " in line]
    assert len(killed) == 1, shown
    assert "killed by the OOM killer (CONSTRAINT_MEMCG)" in killed[0]
    assert "limit 128.0 MiB" in killed[0]
    post_mortem = shown[shown.index("Kill 1 of 1: demo pid") :]
    assert "Trajectory" in post_mortem and "Top mapping groups by resident size" in post_mortem
    assert "[anonymous]" in post_mortem
    # The records before the post-mortem are console lines, not JSON.
    assert not any(line.startswith("{") for line in lines)
    assert lab_cgroups() == before


def test_demo_on_a_pipe_keeps_stdout_json_and_says_the_post_mortem_on_stderr() -> None:
    before = lab_cgroups()
    result = subprocess.run(
        module_command("memdoor", "demo", "--seconds", SECONDS),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=IMPORT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for record in records:
        validate_record(record)
    events = [r["event"] for r in records]
    assert events[0] == "daemon_started" and events[-1] == "daemon_stopping"
    assert "oom_killed" in events
    crossed = records[events.index("threshold_crossed")]
    assert crossed["mappings_summary"]["groups"]
    cmdline = crossed["process"]["cmdline"]
    assert cmdline[1:3] == ["-m", "memdoor.lab.workload"]
    assert not any("\n" in arg for arg in cmdline)
    assert any(r.get("growth", {}).get("last_interval_kb_per_s") for r in records)
    assert "Kill 1 of 1: demo pid" in result.stderr and "Trajectory" in result.stderr
    assert "Traceback" not in result.stderr
    assert lab_cgroups() == before


def test_ctrl_c_stops_the_demo_and_removes_its_cgroup() -> None:
    before = lab_cgroups()
    # A shell's background job inherits SIGINT ignored, and an exec keeps it so: the
    # demo must get it handled (a caught signal is reset to the default on exec).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        demo = subprocess.Popen(
            module_command("memdoor", "demo", "--seconds", "60"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=IMPORT_ROOT,
            start_new_session=True,
        )
    finally:
        signal.signal(signal.SIGINT, inherited)
    try:
        assert demo.stdout is not None
        # Once the daemon watches the process, the cgroup exists and the growth is on.
        for line in demo.stdout:
            if json.loads(line)["event"] == "target_found":
                break
        assert lab_cgroups() != before
        os.killpg(demo.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
        started = time.monotonic()
        _out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, err
    assert time.monotonic() - started < 30
    assert "Traceback" not in err
    assert lab_cgroups() == before


def test_demo_without_root_says_what_root_would_add(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["demo", "--seconds", "2"]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line)["event"] for line in captured.out.splitlines()]
    assert "threshold_crossed" in events and "oom_killed" not in events
    assert "run as root, the demo ends with a real OOM kill" in captured.err
