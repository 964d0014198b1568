"""An exe target for the interpreter memdoor runs under: the daemon never adopts itself,
and a cmdline pattern narrows it to the one process meant."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memdoor.lab.daemon_process import DaemonProcess, write_config

MARKER = "memdoor-narrowing-marker"
PYTHON = os.path.realpath(sys.executable)


@pytest.fixture
def marked_child() -> Iterator[subprocess.Popen[str]]:
    """A python process of the same interpreter, with a distinctive argv."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)", MARKER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        yield child
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()


def adopted_pids(daemon: DaemonProcess) -> set[int]:
    return {r["pid"] for r in daemon.records if r["event"] == "target_found"}


def run_until_adopted(config: Path, child: int) -> tuple[DaemonProcess, set[int]]:
    """The daemon's adoptions once it found child and scanned a few times more."""
    daemon = DaemonProcess(config)
    try:
        daemon.wait_record(lambda r: r["event"] == "target_found" and r["pid"] == child)
        time.sleep(1.0)  # five more scans at interval 0.2
        return daemon, adopted_pids(daemon)
    finally:
        daemon.stop()


def test_an_exe_target_for_memdoors_interpreter_never_adopts_memdoor(
    tmp_path: Path, marked_child: subprocess.Popen[str]
) -> None:
    config = write_config(
        tmp_path / "python.toml",
        f'[[target]]\nname = "py"\nexe = "{PYTHON}"\nthreshold = 99\ninterval = 0.2\n'
        'sections = ["memory"]\n',
    )
    daemon, adopted = run_until_adopted(config, marked_child.pid)
    assert daemon.proc.pid not in adopted
    # Not a stranger's view: this test's own process runs the same python and is adopted.
    assert {os.getpid(), marked_child.pid} <= adopted


def test_a_cmdline_pattern_narrows_an_exe_target_to_the_process_meant(
    tmp_path: Path, marked_child: subprocess.Popen[str]
) -> None:
    config = write_config(
        tmp_path / "python.toml",
        f'[[target]]\nname = "py"\nexe = "{PYTHON}"\ncmdline = " -c .* {MARKER}$"\n'
        'threshold = 99\ninterval = 0.2\nsections = ["memory"]\n',
    )
    _daemon, adopted = run_until_adopted(config, marked_child.pid)
    assert adopted == {marked_child.pid}
