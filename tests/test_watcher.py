"""Watcher and supervisor logic in-process, against real processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Optional

import pytest

from memdoor import supervisor as supervisor_module
from memdoor.collect.cgroup import find_cgroup_mounts
from memdoor.collect.identity import read_identity, read_stat
from memdoor.collect.liveness import Liveness, Verdict
from memdoor.collect.reading import Unreadable
from memdoor.config import ResolvedTarget
from memdoor.emitter import TargetRecords
from memdoor.oom.kernel_log import KernelLog
from memdoor.procfs.kmsg import OomKillReport
from memdoor.records import RecordLog
from memdoor.render.bounded import RECORD_BUDGET
from memdoor.resolve import Resolution
from memdoor.supervisor import TargetSupervisor
from memdoor.system_memory import MemTotal
from memdoor.vocabulary import monotonic_usec, rfc3339
from memdoor.watch.context import Services, TargetState
from memdoor.watch.evidence import EvidenceKeeper, Unidentified
from memdoor.watcher import ProcessWatcher
from tests.pidfiles import fifo_released_after
from tests.record_schema import validate_record


class RecordingLog:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def write(self, level: str, event: str, fields: dict[str, Any]) -> None:
        self.records.append((level, event, fields))

    def events(self) -> list[str]:
        return [event for _level, event, _fields in self.records]


@contextlib.asynccontextmanager
async def supervising(supervisor: TargetSupervisor) -> AsyncIterator[None]:
    """The supervisor running as the daemon runs it (its run(), in a task of its own;
    a fixed pid's watcher runs in it), and stopped after."""
    task = asyncio.get_running_loop().create_task(supervisor.run())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        await asyncio.sleep(0.01)


def make_state(
    pid: int,
    threshold: int = 1,
    count: Any = None,
    services: Optional[Services] = None,
    **overrides: Any,
) -> TargetState:
    settings: dict[str, Any] = {
        "name": "t",
        "pid": pid,
        "pidfile": None,
        "exe": None,
        "threshold": threshold,
        "threshold_base": "system",
        "interval": 0.05,
        "min_interval": 0.05,
        "detail": "summary",
        "full_snapshot_min_interval": 300.0,
        "full_snapshot_growth": 20,
        "full_snapshot_on_change": True,
        "count": count,
        "sections": ("memory", "oom", "tree", "mappings", "connections"),
    }
    settings.update(overrides)
    if services is None:
        services = Services(
            mem_total=MemTotal(), cgroups=None, kernel_log=KernelLog(), pressure=None
        )
    records = TargetRecords(RecordingLog(), ResolvedTarget(**settings), redact_cmdline=True)
    return TargetState(records=records, services=services)


def log_of(state: TargetState) -> Any:
    return state.records.writer


def identity_of(pid: int) -> Any:
    stat = read_stat(pid)
    assert not hasattr(stat, "reason"), stat
    return read_identity(pid, stat, [])  # type: ignore[arg-type]


def test_a_reused_pid_is_reported_gone_and_never_snapshotted(spawn_workload) -> None:
    workload = spawn_workload("--touch-mb", "64")
    state = make_state(workload.pid)
    real = identity_of(workload.pid)
    # The watcher believes it watches a process that started one tick earlier:
    # the live process at this pid is a stranger.
    watcher = ProcessWatcher(state, dataclasses.replace(real, start_ticks=real.start_ticks - 1))
    asyncio.run(watcher.tick())
    assert log_of(state).events() == ["target_gone"]
    assert log_of(state).records[0][2]["reason"] == "pid_reused"
    assert watcher.ended == "pid_reused"


def one_and_a_half_percent_of_ram_mb() -> int:
    total_kb = MemTotal().kb()
    assert isinstance(total_kb, int)
    return total_kb * 15 // 1000 // 1024 + 1


async def tick_spaced(watcher: ProcessWatcher, n: int) -> None:
    """n ticks an interval apart, as the watcher's own loop would space them."""
    for _ in range(n):
        await watcher.tick()
        await asyncio.sleep(watcher.target.interval + 0.01)


def test_crossing_then_samples_then_count(spawn_workload) -> None:
    """Above the threshold: a full snapshot at the crossing, compact samples after it."""
    size_mb = one_and_a_half_percent_of_ram_mb()
    workload = spawn_workload("--touch-mb", str(size_mb))
    state = make_state(workload.pid, threshold=1, count=1)
    watcher = ProcessWatcher(state, identity_of(workload.pid))

    asyncio.run(tick_spaced(watcher, 3))
    assert log_of(state).events() == ["threshold_crossed", "count_reached"]
    crossed = log_of(state).records[0][2]
    assert crossed["process"]["cmdline"] == workload.proc.args[:1]
    assert crossed["memory"]["rss_kb"] >= size_mb * 1024
    assert "mappings_summary" in crossed and "mappings" not in crossed
    assert watcher.evidence.last is not None and watcher.evidence.last.mappings


def test_samples_between_full_snapshots(spawn_workload) -> None:
    size_mb = one_and_a_half_percent_of_ram_mb()
    workload = spawn_workload("--touch-mb", str(size_mb))
    state = make_state(workload.pid, threshold=1)
    watcher = ProcessWatcher(state, identity_of(workload.pid))

    asyncio.run(tick_spaced(watcher, 3))
    assert log_of(state).events() == ["threshold_crossed", "sample", "sample"]
    sample = log_of(state).records[1][2]
    assert sample["memory"]["rss_kb"] >= size_mb * 1024
    assert sample["counts"]["mappings"] == len(watcher.evidence.last.mappings)
    assert len(json.dumps(sample)) < 2048


def test_below_threshold_keeps_a_snapshot_in_memory_without_emitting(spawn_workload) -> None:
    workload = spawn_workload("--touch-mb", "32")
    state = make_state(workload.pid, threshold=99)
    watcher = ProcessWatcher(state, identity_of(workload.pid))
    asyncio.run(watcher.tick())
    assert log_of(state).events() == []
    assert watcher.evidence.last is not None
    assert watcher.evidence.last.memory is not None
    assert watcher.evidence.last.memory.rss_kb >= 32 * 1024


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.0, 2.0), (0.25, 1.5), (0.5, 1.0), (0.75, 0.55), (1.0, 0.1), (3.0, 0.1)],
)
def test_polling_adapts_to_the_distance_from_the_threshold(ratio: float, expected: float) -> None:
    state = make_state(1, interval=1.0, min_interval=0.1)
    watcher = ProcessWatcher(state, identity_of(os.getpid()))
    assert watcher.next_delay(ratio) == pytest.approx(expected)


def test_stale_watcher_makes_the_supervisor_stale(spawn_workload) -> None:
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99)

    async def scenario() -> tuple[bool, bool]:
        supervisor = TargetSupervisor(state)
        await supervisor.step()
        watcher, _task = supervisor.watchers[workload.pid]
        await asyncio.sleep(0.2)
        fresh = supervisor.stale(time.monotonic(), allowance=0.5)
        # A watcher whose tick never returns: its progress stamp stops moving.
        watcher.last_progress -= 10
        stale = supervisor.stale(time.monotonic(), allowance=0.5)
        for _w, task in supervisor.watchers.values():
            task.cancel()
        return fresh, stale

    fresh, stale = asyncio.run(scenario())
    assert fresh is False and stale is True


def test_a_failing_resolution_is_reported_once_and_retried(
    spawn_workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in one target's step must not end its supervision: the step runs again."""
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99)
    collector = LineCollector()
    state.records.writer = RecordLog(collector)
    calls: list[int] = []

    def resolve_failing_twice(*args: Any) -> Any:
        calls.append(1)
        if len(calls) <= 2:
            raise RuntimeError("boom")
        return real_resolve(*args)

    real_resolve = supervisor_module.resolve
    monkeypatch.setattr(supervisor_module, "resolve", resolve_failing_twice)

    async def scenario() -> None:
        supervisor = TargetSupervisor(state)
        task = asyncio.get_running_loop().create_task(supervisor.run())
        while workload.pid not in supervisor.watchers:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 10))
    records = [json.loads(line) for line in collector.lines]
    assert [r["event"] for r in records][:2] == ["watcher_failed", "target_found"]
    failed = records[0]
    assert failed["level"] == "error" and failed["pid"] is None
    assert (
        "RuntimeError('boom')" in failed["message"] and "resolve_failing_twice" in failed["message"]
    )
    for record in records:
        validate_record(record)


def test_a_failing_watcher_is_reported(spawn_workload, monkeypatch: pytest.MonkeyPatch) -> None:
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99)
    collector = LineCollector()
    state.records.writer = RecordLog(collector)
    ticked_by: list[ProcessWatcher] = []

    async def failing_tick(self: ProcessWatcher) -> float:
        ticked_by.append(self)
        raise RuntimeError("bug in a tick")

    monkeypatch.setattr(ProcessWatcher, "tick", failing_tick)

    async def scenario() -> list[ProcessWatcher]:
        supervisor = TargetSupervisor(state)
        # A bug is not the process's end: each next step watches it again, and the
        # same bug met again is not reported again.
        async with supervising(supervisor):
            await until(lambda: len(ticked_by) >= 4)
        return [watcher for watcher, _outcome in supervisor.watchers.values()]

    kept = asyncio.run(scenario())
    records = [json.loads(line) for line in collector.lines]
    assert [r["event"] for r in records] == ["target_found", "watcher_failed"]
    failed = records[1]
    assert failed["pid"] == workload.pid and "bug in a tick" in failed["message"]
    # Each retry is a watcher of its own: the failed one was dropped.
    assert len({id(watcher) for watcher in ticked_by}) == len(ticked_by)
    assert ticked_by[0] not in kept
    for record in records:
        validate_record(record)


def test_after_a_failed_watcher_the_process_is_watched_again_and_its_kill_recorded(
    spawn_workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case the retry exists for: a fixed pid whose watcher met a bug once, and
    the OOM killer later takes the process. Run through the supervisor's own loop."""
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99)
    collector = LineCollector()
    state.records.writer = RecordLog(collector)
    real_step = ProcessWatcher.step
    ticks: list[int] = []

    def step_failing_once(self: ProcessWatcher) -> Any:
        ticks.append(1)
        if len(ticks) == 1:
            raise RuntimeError("bug in the first tick")
        return real_step(self)

    monkeypatch.setattr(ProcessWatcher, "step", step_failing_once)

    async def scenario() -> None:
        supervisor = TargetSupervisor(state)
        task = asyncio.get_running_loop().create_task(supervisor.run())
        while len(ticks) < 3:  # failed, then two ticks of the watcher adopted again
            await asyncio.sleep(0.01)
        plant_kill(state, workload.pid)
        workload.stop()
        while not any('"oom_killed"' in line for line in collector.lines):
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), 20))
    records = [json.loads(line) for line in collector.lines]
    assert [r["event"] for r in records] == ["target_found", "watcher_failed", "oom_killed"]
    assert records[2]["pid"] == workload.pid
    for record in records:
        validate_record(record)


def test_a_watcher_failing_with_another_error_is_reported_again(
    spawn_workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99)
    collector = LineCollector()
    state.records.writer = RecordLog(collector)
    errors = [RuntimeError("first bug"), RuntimeError("first bug"), ValueError("second")]

    async def failing_tick(self: ProcessWatcher) -> float:
        if errors:
            raise errors.pop(0)
        await asyncio.Event().wait()  # no bug left: this watcher just runs
        return 0.0

    monkeypatch.setattr(ProcessWatcher, "tick", failing_tick)

    async def scenario() -> None:
        supervisor = TargetSupervisor(state)
        async with supervising(supervisor):  # adopt, reap, adopt again, ... three failures
            await until(lambda: not errors and workload.pid in supervisor.watchers)

    asyncio.run(scenario())
    records = [json.loads(line) for line in collector.lines]
    assert [r["event"] for r in records] == ["target_found", "watcher_failed", "watcher_failed"]
    assert "first bug" in records[1]["message"] and "second" in records[2]["message"]


def test_a_pid_is_adopted_only_with_the_start_time_resolution_checked(
    spawn_workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pidfile_owner, resolution checks the owner of one process (its start
    time): a process that took the pid since must not be adopted in its place."""
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99)
    started = identity_of(workload.pid).start_ticks
    checked = [started - 1]

    def resolve_checked(*args: Any) -> Resolution:
        return Resolution(pids=[workload.pid], start_ticks={workload.pid: checked[0]})

    monkeypatch.setattr(supervisor_module, "resolve", resolve_checked)

    async def scenario() -> tuple[list[int], list[int]]:
        supervisor = TargetSupervisor(state)
        await supervisor.step()
        before = list(supervisor.watchers)
        checked[0] = started
        await supervisor.step()
        after = list(supervisor.watchers)
        for _watcher, task in supervisor.watchers.values():
            task.cancel()
        return before, after

    before, after = asyncio.run(scenario())
    assert (before, after) == ([], [workload.pid])
    assert log_of(state).events() == ["target_found"]


def test_a_fifo_pidfile_is_refused_at_once_and_the_loop_runs_on(pidfile_dir: Path) -> None:
    """The FIFO once blocked the daemon in open(); now it is refused, and resolution
    runs off the event loop whatever the file system does."""
    os.mkfifo(pidfile_dir / "app.pid")
    # A pidfile target: no fixed pid.
    state = make_state(None, pidfile=str(pidfile_dir / "app.pid"), interval=0.1)
    beats: list[float] = []

    async def heartbeat() -> None:
        while True:
            beats.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def scenario() -> float:
        started = time.monotonic()
        beating = asyncio.get_running_loop().create_task(heartbeat())
        supervising = asyncio.get_running_loop().create_task(TargetSupervisor(state).run())
        while "target_unresolved" not in log_of(state).events():
            await asyncio.sleep(0.01)
        took = time.monotonic() - started
        await asyncio.sleep(0.3)  # a few more intervals: said once, not every interval
        for task in (beating, supervising):
            task.cancel()
        await asyncio.gather(beating, supervising, return_exceptions=True)
        return took

    # Should a regression block the loop in open() again, the FIFO is opened from
    # the other end after 8 s: the test fails instead of hanging.
    with fifo_released_after(pidfile_dir / "app.pid", 8.0):
        took = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert took < 5.0
    assert log_of(state).events() == ["target_unresolved", "target_waiting"]
    problem = log_of(state).records[0][2]["problems"][0]
    assert problem["reason"] == "denied" and problem["detail"].startswith("a FIFO, not a regular")
    assert len(beats) > 10 and max(b - a for a, b in zip(beats, beats[1:])) < 1.0


def plant_kill(state: TargetState, pid: int, **figures: Any) -> None:
    """Put an OOM kill of pid in the kernel log's reports, as a kmsg line would."""
    kernel_log = state.services.kernel_log
    kernel_log.pids_are_ours = True
    report = OomKillReport(
        pid=pid, name="python", evidence=("killed",), usec_since_boot=monotonic_usec(), **figures
    )
    kernel_log.keep(report, time.monotonic())


def test_a_snapshot_torn_by_the_kill_does_not_replace_the_kept_one(spawn_workload) -> None:
    """Once the kernel log holds the process's kill, a later snapshot may overlap its
    exit: the complete snapshot taken before stays the evidence."""
    workload = spawn_workload("--touch-mb", "16")
    state = make_state(workload.pid, threshold=99)
    watcher = ProcessWatcher(state, identity_of(workload.pid))
    asyncio.run(watcher.tick())
    kept = watcher.evidence.kept
    assert kept is not None
    plant_kill(state, workload.pid)
    asyncio.run(watcher._snapshot(0, force=True))
    assert watcher.evidence.kept is kept


def test_in_a_container_a_siblings_earlier_kill_is_not_pinned_on_a_normal_exit(
    spawn_workload,
) -> None:
    """Outside the initial pid namespace kills are matched by name and cgroup. A
    same-named process of the same cgroup was OOM-killed while this one was seen alive
    afterwards: when this one exits normally, it is gone, not OOM-killed."""
    workload = spawn_workload()
    layout = find_cgroup_mounts()
    assert not isinstance(layout, Unreadable)
    kernel_log = KernelLog("/nonexistent/kmsg")
    kernel_log.pids_are_ours = False
    services = Services(MemTotal(), layout, kernel_log, pressure=None)
    state = make_state(workload.pid, threshold=99, services=services)
    identity = identity_of(workload.pid)
    watcher = ProcessWatcher(state, identity)
    watcher.attach()
    assert watcher.tracker is not None
    sibling_kill = OomKillReport(
        pid=900001,
        name=identity.name,
        evidence=("killed", "constraint"),
        usec_since_boot=monotonic_usec(),
        cgroup_kill=True,
        task_memcg=watcher.tracker.place.path,
    )
    kernel_log.keep(sibling_kill, time.monotonic())
    asyncio.run(watcher.tick())
    assert log_of(state).events() == []
    workload.stop()
    asyncio.run(watcher.tick())
    assert log_of(state).events() == ["target_gone"]
    # The report was not consumed: the sibling's own watcher could still claim it.
    assert kernel_log.kill_of(1, 0, identity.name, watcher.tracker.place.path) == sibling_kill


class LineCollector:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, line: str, record: dict[str, Any]) -> None:
        self.lines.append(line)


def test_summary_records_stay_under_16_kib_even_for_oom_killed(spawn_workload) -> None:
    """A 20,000-mapping process with a 100 KB command line: found, crossed, killed."""
    workload = spawn_workload("--mappings", "20000", "--tcp-pairs", "300")
    state = make_state(workload.pid, threshold=1)
    state.records.redact_cmdline = False
    collector = LineCollector()
    state.records.writer = RecordLog(collector)
    identity = dataclasses.replace(
        identity_of(workload.pid), cmdline=["java", "-cp", "x" * 100_000, "Main"]
    )
    watcher = ProcessWatcher(state, identity)
    watcher.records.target_found(None, [], [])
    asyncio.run(watcher._snapshot(0, force=True))
    assert watcher.evidence.last is not None
    watcher.records.full_snapshot(True, watcher.evidence.last, "crossed", "system")
    plant_kill(
        state,
        workload.pid,
        constraint="CONSTRAINT_MEMCG",
        oom_memcg="/" + "a" * 200,
        task_memcg="/" + "a" * 200,
        total_vm_kb=10**9,
        anon_rss_kb=10**8,
    )
    asyncio.run(watcher._ended(Liveness(Verdict.EXITED, None, "gone")))
    events = [json.loads(line)["event"] for line in collector.lines]
    assert events == ["target_found", "threshold_crossed", "oom_killed"]
    for line in collector.lines:
        assert len(line.encode()) <= RECORD_BUDGET, (json.loads(line)["event"], len(line))
        validate_record(json.loads(line))
    killed = json.loads(collector.lines[-1])
    assert killed["process"]["cmdline_truncated"] is True
    assert killed["last_snapshot"]["mappings_summary"]["total"]["count"] > 20000


def test_a_kernel_log_kill_wakes_the_victims_watcher(spawn_workload) -> None:
    """Far below its threshold a watcher sleeps up to two intervals (here 2 x 5 s); the
    daemon wakes it as soon as the kernel log names its pid, or its cgroup."""
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99, interval=5.0, min_interval=0.1)

    async def scenario() -> tuple[bool, bool]:
        supervisor = TargetSupervisor(state)
        async with supervising(supervisor):
            await until(lambda: workload.pid in supervisor.watchers)
            watcher, _outcome = supervisor.watchers[workload.pid]
            await asyncio.sleep(0.3)  # the first tick is done; it sleeps now

            async def woken_by(pids: set[int], cgroup_path: Optional[str]) -> bool:
                before = watcher.last_progress
                supervisor.wake(pids, cgroup_path)
                for _ in range(60):
                    await asyncio.sleep(0.05)
                    if watcher.last_progress != before:
                        return True
                return False

            stranger = await woken_by({workload.pid + 1}, "/elsewhere")
            by_pid = await woken_by({workload.pid}, None)
        return stranger, by_pid

    stranger, by_pid = asyncio.run(scenario())
    assert stranger is False and by_pid is True


async def unreadable(*_args: Any, **_kwargs: Any) -> Unidentified:
    """A snapshot whose process could not be identified (it died under the reads)."""
    return Unidentified()


def test_a_crossing_whose_own_snapshot_failed_is_still_threshold_crossed(
    spawn_workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process killed during the crossing's snapshot leaves nothing to read: the
    crossing is still said, with the snapshot kept from before as its evidence."""
    size_mb = one_and_a_half_percent_of_ram_mb()
    workload = spawn_workload("--touch-mb", str(size_mb))
    state = make_state(workload.pid, threshold=1)
    watcher = ProcessWatcher(state, identity_of(workload.pid))
    asyncio.run(watcher._snapshot(0, force=True))
    kept = watcher.evidence.last
    assert kept is not None and log_of(state).events() == []
    monkeypatch.setattr(EvidenceKeeper, "take", unreadable)
    asyncio.run(watcher.tick())
    assert log_of(state).events() == ["threshold_crossed"]
    crossed = log_of(state).records[0][2]
    assert crossed["taken_at"] == rfc3339(kept.taken_at)


def test_a_crossing_with_no_snapshot_at_all_waits_for_the_next_tick(
    spawn_workload, monkeypatch: pytest.MonkeyPatch
) -> None:
    size_mb = one_and_a_half_percent_of_ram_mb()
    workload = spawn_workload("--touch-mb", str(size_mb))
    state = make_state(workload.pid, threshold=1)
    watcher = ProcessWatcher(state, identity_of(workload.pid))
    with monkeypatch.context() as patched:
        patched.setattr(EvidenceKeeper, "take", unreadable)
        asyncio.run(watcher.tick())
    assert log_of(state).events() == [] and workload.pid not in state.above
    asyncio.run(watcher.tick())
    assert log_of(state).events() == ["threshold_crossed"]
