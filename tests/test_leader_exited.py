"""A process whose main thread called pthread_exit() while another thread runs and grows.

Its leader is a zombie (/proc/PID/stat says Z; statm is all zeros, smaps,
cmdline and the exe link are gone, cgroup names the root), yet the process
lives: memdoor must keep watching it, read it through the live thread, and
report it gone only when that thread ends, or OOM-killed when the kernel
kills it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from memdoor.cli.main import main
from memdoor.collect.cgroup import CgroupMounts, find_cgroup_mounts
from memdoor.collect.identity import (
    ProcessTask,
    read_exe,
    read_identity,
    read_stat,
    where_to_read,
)
from memdoor.collect.liveness import Verdict, check_process
from memdoor.collect.memory import PAGE_KB
from memdoor.collect.reading import Unreadable
from memdoor.lab.daemon_process import DaemonProcess, write_config
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.workload import MIB
from memdoor.procfs.cgroup import parse_proc_cgroup
from memdoor.procfs.kmsg import OomKillReport
from memdoor.procfs.stat import ProcStat
from memdoor.resolve import processes_running
from memdoor.snapshot import take_snapshot
from memdoor.vocabulary import PID_MAX_LIMIT, monotonic_usec
from memdoor.watcher import ProcessWatcher
from tests.cli.test_seed_cli import mem_total_mib
from tests.process_shapes import LeaderExited, leader_exited
from tests.record_schema import validate_record
from tests.test_watcher import identity_of, log_of, make_state, plant_kill


def thread_vm_rss_kb(process: LeaderExited) -> int:
    for line in Path(f"/proc/{process.pid}/task/{process.tid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("the live thread's status has no VmRSS")


def memory_cgroup_line(path: str) -> str:
    entries = parse_proc_cgroup(Path(path).read_text())
    return next(e.path for e in entries if e.is_v2 or "memory" in e.controllers)


def test_this_kernel_leaves_a_zombie_leader_with_a_live_thread() -> None:
    """What the rest relies on: the leader's own files are empty, the thread's are not."""
    with leader_exited() as process:
        leader = read_stat(process.pid)
        assert isinstance(leader, ProcStat) and leader.state == "Z"
        assert sorted(os.listdir(f"/proc/{process.pid}/task")) == sorted(
            [str(process.pid), str(process.tid)]
        )
        assert Path(f"/proc/{process.pid}/statm").read_text().split()[1] == "0"
        assert Path(f"/proc/{process.pid}/cmdline").read_bytes() == b""
        assert thread_vm_rss_kb(process) > 0


def test_liveness_and_identity_go_through_the_live_thread() -> None:
    with leader_exited() as process:
        leader = read_stat(process.pid)
        assert isinstance(leader, ProcStat)
        exe = os.path.realpath(sys.executable)
        liveness = check_process(process.pid, exe, leader.start_ticks)
        assert liveness.verdict is Verdict.SAME, liveness.detail
        assert liveness.task is not None and liveness.stat is not None
        assert (liveness.task.tid, liveness.task.proc) == (
            process.tid,
            f"/proc/{process.pid}/task",
        )
        # Who from the leader, how from the thread.
        assert liveness.stat.pid == process.pid
        assert liveness.stat.start_ticks == leader.start_ticks
        assert not liveness.stat.exited and liveness.stat.state in ("R", "S")
        assert where_to_read(process.pid) == (process.tid, f"/proc/{process.pid}/task")
        assert read_exe(process.pid) == (exe, False)
        problems: list[Unreadable] = []
        identity = read_identity(process.pid, leader, problems)
        assert problems == []
        assert identity.exe == exe and identity.cmdline[:2] == [sys.executable, "-c"]
        process.end_last_thread()
        assert check_process(process.pid, exe, identity.start_ticks).verdict is Verdict.EXITED


def test_a_snapshot_is_read_through_the_live_thread() -> None:
    layout = find_cgroup_mounts()
    assert isinstance(layout, CgroupMounts), layout
    with live_memory_cgroup(1 << 30) as cgroup, leader_exited(cgroup.directory) as process:
        process.grow(32)
        snapshot = take_snapshot(process.pid, cgroups=layout)
        # The leader's own cgroup file names the root by now.
        assert memory_cgroup_line(f"/proc/{process.pid}/cgroup") == "/"
    assert not snapshot.gone and snapshot.problems == [], snapshot.problems
    assert snapshot.identity is not None and snapshot.identity.pid == process.pid
    exe = os.path.realpath(sys.executable)
    assert snapshot.mappings and any(m.path == exe for m in snapshot.mappings)
    assert snapshot.memory is not None and snapshot.memory.rss_kb is not None
    assert snapshot.memory.rss_kb >= 32 * 1024 and snapshot.memory.pss_kb
    assert snapshot.connections == []
    assert snapshot.cgroup is not None
    assert snapshot.cgroup.place.directory == cgroup.directory
    assert snapshot.cgroup.limit_bytes == 1 << 30


def check_task(process: LeaderExited) -> ProcessTask:
    liveness = check_process(process.pid, None, None)
    assert liveness.task is not None
    return liveness.task


def test_the_watcher_keeps_ticking_and_measures_the_thread() -> None:
    with leader_exited() as process:
        state = make_state(process.pid, threshold=99)
        watcher = ProcessWatcher(state, identity_of(process.pid))
        assert watcher.attach() == []

        async def ticks(count: int) -> None:
            for _ in range(count):
                await watcher.tick()

        asyncio.run(ticks(3))
        before = watcher.meter.measure(check_task(process))
        assert before is not None and before.kb == thread_vm_rss_kb(process)
        process.grow(64)
        asyncio.run(ticks(3))
        after = watcher.meter.measure(check_task(process))
        assert after is not None and after.kb == thread_vm_rss_kb(process)
        assert after.kb - before.kb >= 64 * 1024 - PAGE_KB * 64
        assert watcher.ended is None and "target_gone" not in log_of(state).events()
        assert watcher.evidence.last is not None and watcher.evidence.last.mappings
        process.end_last_thread()
        asyncio.run(ticks(1))
    assert watcher.ended == "exited"
    gone = [fields for _l, event, fields in log_of(state).records if event == "target_gone"]
    assert [g["reason"] for g in gone] == ["exited"]


def test_the_daemon_watches_it_above_its_cgroup_limit_and_reports_its_oom_kill(
    tmp_path: Path,
) -> None:
    """The kernel log names such a victim by its thread ("Killed process TID") and the
    process by its leader ("oom-kill:...,pid=PID"): both are joined into the kill."""
    limit_mb = 256
    with live_memory_cgroup(limit_mb * MIB) as cgroup, leader_exited(cgroup.directory) as process:
        config = write_config(
            tmp_path / "a.toml",
            f'[[target]]\nname = "lone"\npid = {process.pid}\nthreshold = 30\n'
            'threshold_base = "cgroup"\ninterval = 0.2\nmin_interval = 0.05\n',
        )
        daemon = DaemonProcess(config)
        try:
            daemon.wait_record(lambda r: r["event"] == "target_found")
            process.grow(limit_mb // 2)
            daemon.wait_record(lambda r: r["event"] == "threshold_crossed", timeout=10)
            process.hog()
            ended = daemon.wait_record(
                lambda r: r["event"] in ("oom_killed", "target_gone"), timeout=30
            )
            assert process.proc.wait(10) == -signal.SIGKILL
        finally:
            assert daemon.stop() == 0
    events = [r["event"] for r in daemon.records if r.get("pid") == process.pid]
    assert ended["event"] == "oom_killed", events
    found = next(r for r in daemon.records if r["event"] == "target_found")
    assert found["cgroup_path"].endswith(os.path.basename(cgroup.directory))
    assert found["process"]["exe"] == os.path.realpath(sys.executable)
    crossed = next(r for r in daemon.records if r["event"] == "threshold_crossed")
    assert crossed["cgroup"]["limit_kb"] == limit_mb * 1024
    assert crossed["cgroup"]["usage_percent"] >= 30 and crossed["mappings_summary"]["groups"]
    kill = ended["kill"]
    assert "kmsg" in kill["sources"], kill
    assert kill["cgroup_kill"] is True and kill["constraint"] == "CONSTRAINT_MEMCG"
    assert kill["task_memcg"].endswith(os.path.basename(cgroup.directory))
    assert ended["last_snapshot"]["process"]["pid"] == process.pid
    for record in daemon.records:
        validate_record(record)


def test_the_kernel_log_joins_a_threads_kill_to_its_process() -> None:
    """The witness tells the kernel log which threads it read the process through: the
    Killed line of one of them is this process's kill, with the constraint line
    the kernel printed for the process itself."""
    with leader_exited() as process:
        state = make_state(process.pid)
        kernel_log = state.services.kernel_log
        plant_kill(state, process.tid, anon_rss_kb=4096)
        kernel_log.keep(
            OomKillReport(
                pid=process.pid,
                name="python",
                evidence=("constraint",),
                usec_since_boot=monotonic_usec(),
                cgroup_kill=True,
                constraint="CONSTRAINT_MEMCG",
                task_memcg="/lab",
            ),
            time.monotonic(),
        )
        unseen = ProcessWatcher(state, identity_of(process.pid))
        assert unseen.witness.report() is None
        watcher = ProcessWatcher(state, identity_of(process.pid))
        asyncio.run(watcher.tick())
        report = watcher.witness.report()
    assert report is not None and report.killed
    assert (report.anon_rss_kb, report.constraint, report.task_memcg) == (
        4096,
        "CONSTRAINT_MEMCG",
        "/lab",
    )


def test_an_exe_target_finds_it() -> None:
    """Its leader has no exe link any more; its thread has."""
    with leader_exited() as process:
        # As a daemon that did not start it scans: this test's children are its own.
        found = processes_running(os.path.realpath(sys.executable), own_pid=PID_MAX_LIMIT)
    assert found.problem is None and process.pid in found.pids


def test_the_seed_command_reports_it(capsys: pytest.CaptureFixture[str]) -> None:
    """RSS from the thread's statm (the leader's is all zeros), a full report above."""
    with leader_exited() as process:
        process.grow(mem_total_mib() // 100 + 16)
        argv = ["-p", str(process.pid), "-e", os.path.realpath(sys.executable), "-m", "1"]
        assert main([*argv, "-i", "0.1", "-c", "1", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    record = json.loads(out)
    assert record["above_threshold"] is True and record["usage_percent"] >= 1
    assert record["problems"] == [] and record["mappings"]
    assert record["process"]["pid"] == process.pid and record["process"]["cmdline"]
