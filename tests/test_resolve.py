"""Finding a target's processes: pidfiles as services write them, and exe scans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memdoor.resolve import processes_running, read_pidfile, resolve
from tests.workload_fixture import SpawnWorkload


def pidfile(tmp_path: Path, content: str) -> str:
    path = tmp_path / "x.pid"
    path.write_text(content)
    return str(path)


@pytest.mark.parametrize("content", ["{pid}", "{pid}\n", "  {pid}  \n", "{pid}\nsecond line\n"])
def test_a_pidfile_names_a_live_process(tmp_path: Path, content: str) -> None:
    resolution = read_pidfile(pidfile(tmp_path, content.format(pid=os.getpid())))
    assert (resolution.pids, resolution.problem) == ([os.getpid()], None)


# '²' passes str.isdigit(): it once reached int() and raised.
@pytest.mark.parametrize("content", ["", "\n", "abc\n", "0\n", "-5\n", "²\n", "12 34\n", "0x10\n"])
def test_a_damaged_pidfile_is_malformed_not_an_exception(tmp_path: Path, content: str) -> None:
    path = pidfile(tmp_path, content)
    resolution = read_pidfile(path)
    assert resolution.pids == []
    assert resolution.problem is not None
    assert (resolution.problem.what, resolution.problem.reason) == (path, "malformed")


def test_a_pidfile_naming_a_dead_pid_resolves_to_nothing(tmp_path: Path) -> None:
    resolution = read_pidfile(pidfile(tmp_path, f"{2**22 + 1}\n"))
    assert (resolution.pids, resolution.problem) == ([], None)


def test_a_missing_pidfile_is_vanished(tmp_path: Path) -> None:
    resolution = read_pidfile(str(tmp_path / "absent.pid"))
    assert resolution.problem is not None and resolution.problem.reason == "vanished"


def test_exe_scan_finds_every_process_of_that_exe_and_only_those(
    spawn_workload: SpawnWorkload,
) -> None:
    first, second = spawn_workload(), spawn_workload()
    exe = first.info["exe"]
    found = processes_running(exe).pids
    assert {first.pid, second.pid} <= set(found)
    for pid in found:
        assert os.readlink(f"/proc/{pid}/exe") == exe
    assert first.pid not in processes_running("/usr/bin/sleep").pids


def test_a_fixed_pid_resolves_while_it_exists(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()
    assert resolve(workload.pid, None, None).pids == [workload.pid]
    workload.stop()
    assert resolve(workload.pid, None, None).pids == []
