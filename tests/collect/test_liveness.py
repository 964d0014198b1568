from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from memdoor.collect.liveness import Verdict, check_process, exe_matches
from tests.collect.trees import COMPLETE, MISSING, MODERN, deny
from tests.collect.zombie import killed_while_frozen, killed_while_large, zombie
from tests.workload_fixture import SpawnWorkload


@pytest.fixture
def copied_tree(tmp_path: Path) -> Path:
    shutil.copytree(f"{MODERN}/{COMPLETE}", tmp_path / str(COMPLETE), symlinks=True)
    return tmp_path


def test_same_process() -> None:
    liveness = check_process(COMPLETE, "/usr/bin/sleep", 109550, MODERN)
    assert liveness.verdict is Verdict.SAME
    assert liveness.stat is not None and liveness.stat.start_ticks == 109550


def test_without_exe_or_start_time_only_existence_counts() -> None:
    assert check_process(COMPLETE, None, None, MODERN).verdict is Verdict.SAME


def test_exe_mismatch() -> None:
    liveness = check_process(COMPLETE, "/usr/bin/true", None, MODERN)
    assert liveness.verdict is Verdict.EXE_MISMATCH
    assert liveness.detail == f"pid {COMPLETE} runs /usr/bin/sleep, not /usr/bin/true"


def test_reused_pid_running_the_same_binary() -> None:
    liveness = check_process(COMPLETE, "/usr/bin/sleep", 109549, MODERN)
    assert liveness.verdict is Verdict.REUSED


def test_missing_pid_has_exited() -> None:
    liveness = check_process(MISSING, "/usr/bin/sleep", None, MODERN)
    assert (liveness.verdict, liveness.stat) == (Verdict.EXITED, None)


def test_zombie_in_a_tree_has_exited(copied_tree: Path) -> None:
    stat = copied_tree / str(COMPLETE) / "stat"
    stat.write_text(stat.read_text().replace("(sleep) S", "(sleep) Z"))
    assert check_process(COMPLETE, "/usr/bin/sleep", None, str(copied_tree)).verdict is (
        Verdict.EXITED
    )


def test_exiting_task_in_a_tree_has_exited(copied_tree: Path) -> None:
    """State R with PF_EXITING (0x4) in flags, as a large process shows while it frees memory."""
    stat = copied_tree / str(COMPLETE) / "stat"
    stat.write_text(
        stat.read_text().replace("(sleep) S", "(sleep) R").replace(" 4194304 ", " 4194308 ")
    )
    liveness = check_process(COMPLETE, "/usr/bin/sleep", None, str(copied_tree))
    assert (liveness.verdict, liveness.detail) == (
        Verdict.EXITED,
        f"pid {COMPLETE} has exited (exiting)",
    )


def test_exe_gone_between_reads_has_exited(copied_tree: Path) -> None:
    (copied_tree / str(COMPLETE) / "exe").unlink()
    assert check_process(COMPLETE, "/usr/bin/sleep", None, str(copied_tree)).verdict is (
        Verdict.EXITED
    )


def test_denied_exe_is_unverifiable(monkeypatch: pytest.MonkeyPatch) -> None:
    deny(monkeypatch, f"{MODERN}/{COMPLETE}/exe")
    liveness = check_process(COMPLETE, "/usr/bin/sleep", None, MODERN)
    assert liveness.verdict is Verdict.UNVERIFIABLE
    assert "denied" in liveness.detail


def test_denied_stat_is_unverifiable(monkeypatch: pytest.MonkeyPatch) -> None:
    deny(monkeypatch, f"{MODERN}/{COMPLETE}/stat")
    liveness = check_process(COMPLETE, None, None, MODERN)
    assert (liveness.verdict, liveness.stat) == (Verdict.UNVERIFIABLE, None)


def test_exe_matches_a_symlink_to_the_binary(tmp_path: Path) -> None:
    os.symlink("/usr/bin/sleep", tmp_path / "sleep-link")
    assert exe_matches("/usr/bin/sleep", str(tmp_path / "sleep-link"))
    assert exe_matches("/usr/bin/sleep", "/usr/bin/sleep")
    assert not exe_matches("/usr/bin/sleep", "/usr/bin/true")


def test_real_process_through_its_life(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()
    exe = workload.info["exe"]
    first = check_process(workload.pid, exe, None)
    assert first.verdict is Verdict.SAME and first.stat is not None
    assert check_process(workload.pid, exe, first.stat.start_ticks).verdict is Verdict.SAME
    assert check_process(workload.pid, "/usr/bin/true", None).verdict is Verdict.EXE_MISMATCH
    assert check_process(workload.pid, exe, first.stat.start_ticks + 1).verdict is Verdict.REUSED
    workload.stop()
    assert check_process(workload.pid, exe, first.stat.start_ticks).verdict is Verdict.EXITED


def test_real_large_process_is_gone_from_the_kill_not_from_the_reaping() -> None:
    """Alive until the kill is taken, then never alive again while the memory is freed."""
    readings: list[tuple[Verdict, str]] = []
    with killed_while_large() as pid:
        while not readings or readings[-1][1] != "Z":
            liveness = check_process(pid, None, None)
            assert liveness.stat is not None
            readings.append((liveness.verdict, liveness.stat.state))
    verdicts = [verdict for verdict, _ in readings]
    runs = [verdict for i, verdict in enumerate(verdicts) if i == 0 or verdicts[i - 1] != verdict]
    assert runs in ([Verdict.SAME, Verdict.EXITED], [Verdict.EXITED]), runs
    # Not a zombie yet, still freeing its memory: already gone.
    assert any(verdict is Verdict.EXITED and state != "Z" for verdict, state in readings)


def test_real_process_with_sigkill_pending_is_still_there_but_doomed() -> None:
    """Intact until it runs: not gone yet, but no longer proof of being alive after a kill."""
    with killed_while_frozen() as pid:
        liveness = check_process(pid, "/usr/bin/sleep", None)
        assert liveness.verdict is Verdict.SAME
        assert liveness.stat is not None and liveness.stat.kill_pending
        assert not liveness.stat.exited


def test_real_zombie_has_exited() -> None:
    with zombie() as pid:
        assert check_process(pid, "/bin/true", None).verdict is Verdict.EXITED


def _task_stat(directory: Path, tid: int, state: str, flags: int) -> None:
    """A thread's stat: the leader's fields with its own id, state and flags."""
    leader = (Path(MODERN) / str(COMPLETE) / "stat").read_text()
    text = leader.replace(f"{COMPLETE} (sleep) S", f"{tid} (sleep) {state}", 1)
    (directory / str(tid)).mkdir(parents=True)
    (directory / str(tid) / "stat").write_text(text.replace(" 4194304 ", f" {flags} ", 1))


def test_a_zombie_leader_with_a_live_thread_is_alive_through_it(copied_tree: Path) -> None:
    """pthread_exit() in the main thread: the leader is Z with PF_EXITING, and its exe
    link and figures are gone, while a thread runs; an exiting thread does not count."""
    process = copied_tree / str(COMPLETE)
    stat = process / "stat"
    stat.write_text(
        stat.read_text().replace("(sleep) S", "(sleep) Z").replace(" 4194304 ", " 4194308 ")
    )
    tasks = process / "task"
    _task_stat(tasks, COMPLETE, "Z", 4194308)
    _task_stat(tasks, COMPLETE + 1, "R", 4194308)
    _task_stat(tasks, COMPLETE + 2, "S", 4194368)
    (process / "exe").rename(tasks / str(COMPLETE + 2) / "exe")

    liveness = check_process(COMPLETE, "/usr/bin/sleep", 109550, str(copied_tree))
    assert liveness.verdict is Verdict.SAME, liveness.detail
    assert liveness.task is not None
    assert (liveness.task.tid, liveness.task.proc) == (COMPLETE + 2, str(tasks))
    assert liveness.stat is not None
    assert (liveness.stat.pid, liveness.stat.state, liveness.stat.exited) == (COMPLETE, "S", False)

    _task_stat(copied_tree / "gone", COMPLETE + 2, "Z", 4194372)
    (copied_tree / "gone" / str(COMPLETE + 2) / "stat").replace(tasks / str(COMPLETE + 2) / "stat")
    assert check_process(COMPLETE, None, None, str(copied_tree)).verdict is Verdict.EXITED
