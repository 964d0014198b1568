"""Watcher and supervisor logic in-process, against real processes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from memdoor.collect.identity import read_identity, read_stat
from memdoor.config import ResolvedTarget
from memdoor.supervisor import TargetSupervisor
from memdoor.system_memory import MemTotal
from memdoor.watcher import ProcessWatcher, TargetState


class RecordingLog:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, **fields: Any) -> None:
            self.records.append((level, event, fields))

        return log

    def events(self) -> list[str]:
        return [event for _level, event, _fields in self.records]


def make_state(pid: int, threshold: int = 1, count: Any = None) -> TargetState:
    target = ResolvedTarget(
        name="t",
        pid=pid,
        pidfile=None,
        exe=None,
        threshold=threshold,
        threshold_base="system",
        interval=0.05,
        min_interval=0.05,
        count=count,
        sections=("memory", "oom", "tree", "mappings", "connections"),
    )
    return TargetState(target=target, log=RecordingLog(), mem_total=MemTotal(), redact_cmdline=True)


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
    assert state.log.events() == ["target_gone"]
    assert state.log.records[0][2]["reason"] == "pid_reused"
    assert watcher.ended == "pid_reused"


def one_and_a_half_percent_of_ram_mb() -> int:
    total_kb = MemTotal().kb()
    assert isinstance(total_kb, int)
    return total_kb * 15 // 1000 // 1024 + 1


def test_crossing_snapshot_count_and_redaction(spawn_workload) -> None:
    size_mb = one_and_a_half_percent_of_ram_mb()
    workload = spawn_workload("--touch-mb", str(size_mb))
    state = make_state(workload.pid, threshold=1, count=2)
    watcher = ProcessWatcher(state, identity_of(workload.pid))
    for _ in range(3):
        asyncio.run(watcher.tick())
    assert state.log.events() == ["threshold_crossed", "snapshot", "count_reached"]
    crossed = state.log.records[0][2]
    assert crossed["process"]["cmdline"] == workload.proc.args[:1]
    assert crossed["memory"]["rss_kb"] >= size_mb * 1024
    assert watcher.last_snapshot is not None and watcher.last_snapshot.mappings


def test_stale_watcher_makes_the_supervisor_stale(spawn_workload) -> None:
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99)

    async def scenario() -> tuple[bool, bool]:
        supervisor = TargetSupervisor(state)
        supervisor.step()
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
