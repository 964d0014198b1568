from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from memdoor.collect.identity import (
    CLOCK_TICKS,
    ProcessIdentity,
    boot_time,
    read_exe,
    read_identity,
    read_stat,
)
from memdoor.collect.reading import Unreadable
from memdoor.procfs.stat import ProcStat
from tests.collect.trees import COMPLETE, MISSING, MODERN, PARENT
from tests.workload_fixture import SpawnWorkload

BTIME = 1795547672


def test_read_stat() -> None:
    assert read_stat(COMPLETE, MODERN) == ProcStat(
        COMPLETE, "sleep", "S", PARENT, 109550, 0x400000, 0
    )


def test_read_stat_of_a_missing_pid() -> None:
    result = read_stat(MISSING, MODERN)
    assert isinstance(result, Unreadable)
    assert (result.what, result.reason) == (f"{MODERN}/{MISSING}/stat", "vanished")


def test_read_stat_malformed(tmp_path: Path) -> None:
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "stat").write_text("5 (x) S 1\n")
    result = read_stat(5, str(tmp_path))
    assert isinstance(result, Unreadable)
    assert (result.what, result.reason) == (f"{tmp_path}/5/stat", "malformed")


def test_boot_time() -> None:
    assert boot_time(MODERN) == BTIME


def test_boot_time_without_btime(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  1 2 3\n")
    assert boot_time(str(tmp_path)) is None
    assert boot_time(str(tmp_path / "missing")) is None


def test_read_exe(tmp_path: Path) -> None:
    assert read_exe(COMPLETE, MODERN) == ("/usr/bin/sleep", False)
    (tmp_path / "9").mkdir()
    # What the kernel shows after a package upgrade replaced the binary.
    os.symlink("/usr/sbin/nginx (deleted)", tmp_path / "9" / "exe")
    assert read_exe(9, str(tmp_path)) == ("/usr/sbin/nginx", True)


def test_read_identity_from_the_tree() -> None:
    stat = read_stat(COMPLETE, MODERN)
    assert isinstance(stat, ProcStat)
    problems: list[Unreadable] = []
    assert read_identity(COMPLETE, stat, problems, MODERN) == ProcessIdentity(
        pid=COMPLETE,
        ppid=PARENT,
        name="sleep",
        start_ticks=109550,
        started_at=BTIME + 109550 / CLOCK_TICKS,
        exe="/usr/bin/sleep",
        exe_deleted=False,
        cmdline=["/usr/bin/sleep", "1000"],
    )
    assert problems == []


def test_read_identity_notes_what_it_could_not_read(tmp_path: Path) -> None:
    shutil.copytree(f"{MODERN}/{COMPLETE}", tmp_path / str(COMPLETE), symlinks=True)
    (tmp_path / str(COMPLETE) / "exe").unlink()
    (tmp_path / str(COMPLETE) / "cmdline").unlink()
    stat = read_stat(COMPLETE, str(tmp_path))
    assert isinstance(stat, ProcStat)
    problems: list[Unreadable] = []
    identity = read_identity(COMPLETE, stat, problems, str(tmp_path))
    assert (identity.exe, identity.cmdline, identity.started_at) == (None, [], None)
    assert [(p.what, p.reason) for p in problems] == [
        (f"{tmp_path}/{COMPLETE}/exe", "vanished"),
        (f"{tmp_path}/{COMPLETE}/cmdline", "vanished"),
    ]


def test_read_identity_of_a_real_process(spawn_workload: SpawnWorkload) -> None:
    before = time.time()
    workload = spawn_workload()
    after = time.time()
    stat = read_stat(workload.pid)
    assert isinstance(stat, ProcStat)
    problems: list[Unreadable] = []
    identity = read_identity(workload.pid, stat, problems)
    assert problems == []
    assert identity.exe == workload.info["exe"] == os.path.realpath(sys.executable)
    assert identity.cmdline == workload.proc.args
    assert identity.ppid == os.getpid()
    assert identity.start_ticks == stat.start_ticks
    # btime has whole seconds, so the start time is only right to about 1 s.
    assert identity.started_at is not None
    assert before - 1.5 <= identity.started_at <= after + 1.5


def test_read_stat_of_an_exited_process(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()
    workload.stop()
    result = read_stat(workload.pid)
    assert isinstance(result, Unreadable)
    assert (result.what, result.reason) == (f"/proc/{workload.pid}/stat", "vanished")
