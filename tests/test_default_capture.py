"""With default settings, in a memory cgroup: crossed before the kill, reported at once.

A user writes only the target and a threshold. The default base measures the
process against every limit that can kill it, so a cgroup's limit is crossed
before MemTotal's; the process's exit wakes its watcher, so the kill is told
within a second rather than at the next tick (up to two 5 s intervals).
"""

from __future__ import annotations

import datetime
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memdoor.lab.daemon_process import DaemonProcess, write_config
from memdoor.lab.memory_cgroup import LiveCgroup, live_memory_cgroup
from memdoor.lab.workload import MIB
from memdoor.lab.workload_parent import Workload
from tests.record_schema import validate_record

LIMIT_MB = 256
# The promise, with nothing else on the machine: the record within a second.
TOLD_WITHIN_S = 1.0


def epoch(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


@contextmanager
def watched_in_cgroup(
    tmp_path: Path, pidfile_dir: Path, settings: str, *workload_args: str
) -> Iterator[tuple[DaemonProcess, LiveCgroup, Workload]]:
    """A daemon with only a pidfile target, threshold 90 and settings, watching a
    workload it has adopted in a 256 MiB cgroup."""
    pidfile = pidfile_dir / "app.pid"
    text = f'[[target]]\nname = "app"\npidfile = "{pidfile}"\nthreshold = 90\n{settings}'
    daemon = DaemonProcess(write_config(tmp_path / "a.toml", text))
    try:
        daemon.wait_record(lambda r: r["event"] == "target_waiting")
        with live_memory_cgroup(LIMIT_MB * MIB) as cgroup:
            workload = cgroup.spawn("--touch-mb", "16", *workload_args)
            pidfile.write_text(f"{workload.pid}\n")
            daemon.wait_record(
                lambda r: r["event"] == "target_found" and r["pid"] == workload.pid, timeout=30
            )
            yield daemon, cgroup, workload
    finally:
        assert daemon.stop() == 0
    for record in daemon.records:
        validate_record(record)


def start_growing(workload: Workload) -> None:
    assert workload.proc.stdin is not None
    workload.proc.stdin.write(b"go\n")
    workload.proc.stdin.flush()


def test_defaults_cross_at_the_cgroup_limit_and_tell_the_kill_within_a_second(
    tmp_path: Path, pidfile_dir: Path
) -> None:
    grow = ("--grow-after-stdin-line", "--grow-until-killed", "--grow-mb-per-s", "400")
    with watched_in_cgroup(tmp_path, pidfile_dir, "", *grow) as (daemon, _cgroup, hog):
        start_growing(hog)
        assert hog.proc.wait(60) == -signal.SIGKILL
        killed = daemon.wait_record(
            lambda r: r["event"] in ("oom_killed", "target_gone") and r["pid"] == hog.pid
        )
    assert killed["event"] == "oom_killed", killed
    mine = [r for r in daemon.records if r.get("pid") == hog.pid]
    crossed = [r for r in mine[: mine.index(killed)] if r["event"] == "threshold_crossed"]
    assert crossed, [r["event"] for r in mine]
    assert crossed[0]["threshold_base"] == "any"
    assert crossed[0]["measured_base"] == "cgroup"
    assert crossed[0]["cgroup"]["usage_percent"] >= 90
    assert "RSS" in crossed[0]["message"]  # the other figure, named beside the crossing one
    kill = killed["kill"]
    assert kill["killed_at"] is not None, kill  # the kernel log is readable here (root)
    assert epoch(killed["timestamp"]) - epoch(kill["killed_at"]) <= TOLD_WITHIN_S, kill


def test_an_exit_is_told_within_a_second_at_the_default_interval(
    tmp_path: Path, pidfile_dir: Path
) -> None:
    """Far below its threshold a watcher sleeps up to two 5 s intervals; its exit wakes it."""
    with watched_in_cgroup(tmp_path, pidfile_dir, "") as (daemon, _cgroup, victim):
        time.sleep(0.5)  # the watcher is asleep now, below the threshold
        killed_at = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        gone = daemon.wait_record(lambda r: r["event"] in ("oom_killed", "target_gone"))
    assert gone["event"] == "target_gone" and gone["reason"] == "exited", gone
    assert epoch(gone["timestamp"]) - killed_at <= TOLD_WITHIN_S
    found = next(r for r in daemon.records if r["event"] == "target_found")
    assert "exit" in found["wakeups"], found


def test_a_system_threshold_the_cgroup_limit_makes_unreachable_is_said(
    tmp_path: Path, pidfile_dir: Path
) -> None:
    with watched_in_cgroup(tmp_path, pidfile_dir, 'threshold_base = "system"\n') as (
        daemon,
        _cgroup,
        _w,
    ):
        pass
    found: dict[str, Any] = next(r for r in daemon.records if r["event"] == "target_found")
    (warning,) = found["warnings"]
    assert "256.0 MiB" in warning and "90% of MemTotal" in warning, warning
    assert 'threshold_base = "any"' in warning
