from __future__ import annotations

import os
from pathlib import Path

from memdoor.collect.identity import read_stat
from memdoor.collect.reading import Unreadable
from memdoor.collect.tree import MAX_DEPTH, Ancestor, read_ancestry
from memdoor.procfs.stat import ProcStat
from tests.collect.trees import MODERN, PARENT
from tests.workload_fixture import SpawnWorkload


def write_stat(proc: Path, pid: int, name: str, ppid: int) -> None:
    (proc / str(pid)).mkdir()
    fields = " ".join(["0"] * 40)
    (proc / str(pid) / "stat").write_text(f"{pid} ({name}) S {ppid} {fields}\n")


def test_recorded_chain_up_to_init() -> None:
    problems: list[Unreadable] = []
    assert read_ancestry(PARENT, problems, MODERN) == [
        Ancestor(PARENT, "python"),
        Ancestor(1, "systemd"),
    ]
    assert problems == []


def test_no_parent() -> None:
    problems: list[Unreadable] = []
    assert read_ancestry(0, problems, MODERN) == []
    assert problems == []


def test_parent_vanished_mid_walk(tmp_path: Path) -> None:
    write_stat(tmp_path, 30, "worker", 20)
    problems: list[Unreadable] = []
    assert read_ancestry(30, problems, str(tmp_path)) == [Ancestor(30, "worker")]
    assert [(p.what, p.reason) for p in problems] == [(f"{tmp_path}/20/stat", "vanished")]


def test_a_loop_ends(tmp_path: Path) -> None:
    write_stat(tmp_path, 30, "a", 31)
    write_stat(tmp_path, 31, "b", 30)
    problems: list[Unreadable] = []
    assert read_ancestry(30, problems, str(tmp_path)) == [Ancestor(30, "a"), Ancestor(31, "b")]
    assert problems == []


def test_depth_is_bounded(tmp_path: Path) -> None:
    depth = MAX_DEPTH + 5
    for pid in range(2, depth + 2):
        write_stat(tmp_path, pid, "n", pid + 1)
    problems: list[Unreadable] = []
    assert len(read_ancestry(2, problems, str(tmp_path))) == MAX_DEPTH


def test_real_chain(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()
    stat = read_stat(workload.pid)
    assert isinstance(stat, ProcStat)
    problems: list[Unreadable] = []
    chain = read_ancestry(stat.ppid, problems)
    assert problems == []
    # The workload's parent is this test process, whose parent is ours.
    assert chain[0] == Ancestor(os.getpid(), Path("/proc/self/comm").read_text().rstrip("\n"))
    assert chain[1].pid == os.getppid()
    assert chain[-1].pid == 1
