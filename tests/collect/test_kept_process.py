"""The files a tick keeps open, on real processes: bound to the process they were opened
for, verdicts as check_process gives them, and nothing left open when watching ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memdoor.collect.identity import read_stat
from memdoor.collect.kept import KeptFile
from memdoor.collect.kept_process import KeptProcess
from memdoor.collect.liveness import Verdict, check_process
from memdoor.collect.memory import read_rss_kb
from memdoor.collect.reading import Unreadable
from memdoor.procfs.stat import ProcStat
from memdoor.watcher import ProcessWatcher
from tests.test_watcher import identity_of, log_of, make_state

NS_LAST_PID = Path("/proc/sys/kernel/ns_last_pid")


@contextlib.contextmanager
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "1000"])
    try:
        # Asleep in nanosleep: loaded, so its RSS no longer moves between two reads.
        deadline = time.monotonic() + 30
        while getattr(read_stat(child.pid), "state", None) != "S":
            assert time.monotonic() < deadline, "sleep never went to sleep"
            time.sleep(0.01)
        yield child
    finally:
        child.kill()
        child.wait()


def start_ticks(pid: int) -> int:
    stat = read_stat(pid)
    assert isinstance(stat, ProcStat)
    return stat.start_ticks


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_kept_stat_answers_like_check_process_and_reads_statm_like_read_rss_kb() -> None:
    with sleeper() as child:
        kept = KeptProcess(child.pid)
        try:
            for _ in range(3):  # the first read opens, the next ones reuse the verdict
                liveness = kept.check("/nonexistent/sleep", start_ticks(child.pid))
                assert liveness.verdict is Verdict.EXE_MISMATCH
                same = kept.check(None, start_ticks(child.pid))
                assert same.verdict is Verdict.SAME and same.task is not None
                assert kept.rss_kb(same.task) == read_rss_kb(child.pid)
        finally:
            kept.close()


# Touches 8 MiB more for each line read, and says so.
_GROWER = (
    "import sys\n"
    "kept = []\n"
    "print('ready', flush=True)\n"
    "for _ in sys.stdin:\n"
    "    kept.append(b'x' * (8 << 20))\n"
    "    print('grown', flush=True)\n"
)


def test_a_kept_statm_follows_a_process_that_grows_between_reads() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _GROWER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    kept = KeptProcess(child.pid)
    try:
        assert child.stdout.readline() == "ready\n"
        seen = []
        for _ in range(3):
            liveness = kept.check(None, start_ticks(child.pid))
            assert liveness.task is not None
            rss_kb = kept.rss_kb(liveness.task)
            assert rss_kb == read_rss_kb(child.pid)
            # The same figure read again, the process at rest.
            assert kept.rss_kb(liveness.task) == rss_kb
            seen.append(rss_kb)
            child.stdin.write("grow\n")
            child.stdin.flush()
            assert child.stdout.readline() == "grown\n"
        assert isinstance(seen[0], int) and isinstance(seen[-1], int)
        assert seen[-1] >= seen[0] + 2 * 8 * 1024
    finally:
        kept.close()
        child.kill()
        child.wait()


def test_a_kept_stat_fails_once_its_process_is_gone_and_the_verdict_is_exited() -> None:
    with sleeper() as child:
        kept = KeptProcess(child.pid)
        started = start_ticks(child.pid)
        assert kept.check(None, started).verdict is Verdict.SAME
        stat = KeptFile(f"/proc/{child.pid}/stat")
        assert isinstance(stat.read(), bytes)
        child.kill()
        child.wait()
        gone = stat.read()
        assert isinstance(gone, Unreadable) and gone.reason == "vanished"
        liveness = kept.check(None, started)
        assert liveness.verdict is Verdict.EXITED
        assert liveness.verdict is check_process(child.pid, None, started).verdict
        stat.close()


def test_a_reused_pid_is_never_read_through_the_old_processes_descriptor() -> None:
    """The pid of a reaped process handed to a new one: the old descriptor fails (ESRCH),
    and the verdict says the pid was reused, even when the new process started in the
    same clock tick (often so here), where start times alone cannot tell them apart."""
    if not os.access(NS_LAST_PID, os.W_OK):
        pytest.skip("choosing the next pid needs a writable /proc/sys/kernel/ns_last_pid")
    for _attempt in range(20):
        with sleeper() as old:
            pid, started = old.pid, start_ticks(old.pid)
            kept = KeptProcess(pid)
            assert kept.check(None, started).verdict is Verdict.SAME
            old.kill()
            old.wait()
        NS_LAST_PID.write_text(str(pid - 1))
        with sleeper() as new:
            if new.pid != pid:
                kept.close()
                continue  # another process took the pid first on this busy host
            liveness = kept.check(None, started)
            assert liveness.verdict is Verdict.REUSED, liveness
            kept.close()
            return
    pytest.skip("another process took the chosen pid every time")


def test_no_descriptor_is_left_open_after_a_hundred_watched_processes_came_and_went() -> None:
    async def watch_and_end(child: subprocess.Popen[bytes]) -> str:
        watcher = ProcessWatcher(make_state(child.pid, threshold=99), identity_of(child.pid))
        watcher.attach()
        task = asyncio.get_running_loop().create_task(watcher.run())
        await asyncio.sleep(0.5)  # its first ticks open the kept files
        child.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.wait)
        await asyncio.wait_for(task, 10)
        assert log_of(watcher.state).events()[-1] == "target_gone"
        return str(watcher.ended)

    async def main() -> list[str]:
        children = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(99)"])]
        children += [subprocess.Popen(["sleep", "1000"]) for _ in range(99)]
        try:
            return list(await asyncio.gather(*(watch_and_end(c) for c in children)))
        finally:
            for child in children:
                child.kill()
                child.wait()

    before = open_fds()
    ended = asyncio.run(main())
    assert ended == ["exited"] * 100
    assert open_fds() - before == set()


def test_a_kept_file_named_in_a_directory_reads_and_fails_as_one_named_by_its_path() -> None:
    with sleeper() as child:
        directory = f"/proc/{child.pid}/"
        named = KeptFile(directory, "stat")
        whole = KeptFile(f"{directory}stat")
        try:
            assert named.path == whole.path == f"/proc/{child.pid}/stat"
            assert named.read() == whole.read()
            child.kill()
            child.wait()
            gone, gone_too = named.read(), whole.read()
            assert isinstance(gone, Unreadable) and gone == gone_too
            assert gone.what == f"/proc/{child.pid}/stat" and not named.opened
        finally:
            named.close()
            whole.close()


def test_a_process_at_rest_gets_the_verdict_and_rss_of_the_tick_before_as_they_were() -> None:
    with sleeper() as child:
        kept = KeptProcess(child.pid)
        started = start_ticks(child.pid)
        try:
            first = kept.check(None, started)
            assert first.verdict is Verdict.SAME and first.task is not None
            rss_kb = kept.rss_kb(first.task)
            again = kept.check(None, started)
            assert again is first and kept.rss_kb(first.task) is rss_kb
            assert rss_kb == read_rss_kb(child.pid)
            # Asked about another start time, the verdict is judged afresh.
            reused = kept.check(None, started + 1)
            assert reused.verdict is Verdict.REUSED
            assert kept.check(None, started) is not first
        finally:
            kept.close()
