"""Real OOM kills in a memory cgroup the test creates: does memdoor catch them?"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from memdoor.lab.daemon_process import DaemonProcess, write_config
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.workload import MIB
from tests.record_schema import validate_record

LIMIT_MB = 256


def pidfile_target(pidfile: Path, threshold: int) -> str:
    return (
        f'[[target]]\nname = "hog"\npidfile = "{pidfile}"\nthreshold = {threshold}\n'
        'threshold_base = "cgroup"\ninterval = 0.2\nmin_interval = 0.05\n'
    )


def records_of(daemon: DaemonProcess, pid: int) -> list[dict[str, Any]]:
    return [r for r in daemon.records if r.get("pid") == pid and r.get("target") == "hog"]


def hog_until_killed(
    tmp_path: Path, pidfile_dir: Path, threshold: int, rate_mb_per_s: int
) -> tuple[DaemonProcess, int, dict[str, Any]]:
    """A daemon watching a hog that grows in a 256 MiB cgroup until the kernel kills it.

    Returns the stopped daemon, the hog's pid, and the record that ended it.
    """
    pidfile = pidfile_dir / "hog.pid"
    config = write_config(tmp_path / "a.toml", pidfile_target(pidfile, threshold))
    daemon = DaemonProcess(config)
    try:
        daemon.wait_record(lambda r: r["event"] == "target_waiting")
        with live_memory_cgroup(LIMIT_MB * MIB) as cgroup:
            hog = cgroup.spawn(
                "--touch-mb", "16", "--grow-mb-per-s", str(rate_mb_per_s), "--grow-to-mb", "4096"
            )
            pidfile.write_text(f"{hog.pid}\n")
            ended = daemon.wait_record(
                lambda r: r["event"] in ("oom_killed", "target_gone") and r["pid"] == hog.pid,
                timeout=30,
            )
            assert hog.proc.wait(10) == -signal.SIGKILL
    finally:
        assert daemon.stop() == 0
    return daemon, hog.pid, ended


def test_snapshot_before_the_kill_and_oom_killed_after(tmp_path: Path, pidfile_dir: Path) -> None:
    daemon, pid, killed = hog_until_killed(tmp_path, pidfile_dir, threshold=50, rate_mb_per_s=100)
    assert killed["event"] == "oom_killed", killed
    mine = records_of(daemon, pid)
    before = mine[: mine.index(killed)]
    above = [r for r in before if r["event"] in ("threshold_crossed", "snapshot")]
    assert above, [r["event"] for r in mine]
    assert above[0]["cgroup"]["usage_percent"] >= 50
    assert above[0]["cgroup"]["limit_kb"] == LIMIT_MB * 1024
    kill = killed["kill"]
    assert "kmsg" in kill["sources"] and "cgroup_counter" in kill["sources"], kill
    assert kill["cgroup_kill"] is True
    assert kill["cgroup_oom_kill_after"] == kill["cgroup_oom_kill_before"] + 1
    assert kill["anon_rss_kb"] > (LIMIT_MB // 2) * 1024
    last = killed["last_snapshot"]
    assert last is not None and last["process"]["pid"] == pid
    assert last["age_ms"] >= 0
    assert last["cgroup"]["usage_percent"] >= 50
    for record in daemon.records:
        validate_record(record)


def test_a_threshold_too_high_still_gets_the_last_snapshot(
    tmp_path: Path, pidfile_dir: Path
) -> None:
    """Nothing crosses 99% before the kill, but the kept snapshot rides on oom_killed."""
    _daemon, _pid, killed = hog_until_killed(tmp_path, pidfile_dir, threshold=99, rate_mb_per_s=200)
    assert killed["event"] == "oom_killed", killed
    assert killed["last_snapshot"] is not None
    assert killed["last_snapshot"]["memory"]["rss_kb"] >= 16 * 1024
    validate_record(killed)


def test_plain_sigkill_is_gone_not_oom_killed(tmp_path: Path, pidfile_dir: Path) -> None:
    pidfile = pidfile_dir / "hog.pid"
    config = write_config(tmp_path / "a.toml", pidfile_target(pidfile, threshold=50))
    daemon = DaemonProcess(config)
    try:
        with live_memory_cgroup(LIMIT_MB * MIB) as cgroup:
            victim = cgroup.spawn("--touch-mb", "16")
            pidfile.write_text(f"{victim.pid}\n")
            daemon.wait_record(lambda r: r["event"] == "target_found" and r["pid"] == victim.pid)
            os.kill(victim.pid, signal.SIGKILL)
            gone = daemon.wait_record(
                lambda r: r["event"] in ("oom_killed", "target_gone") and r["pid"] == victim.pid
            )
    finally:
        assert daemon.stop() == 0
    assert gone["event"] == "target_gone" and gone["reason"] == "exited", gone
    validate_record(gone)


# With kernel.dmesg_restrict=1, /dev/kmsg needs CAP_SYSLOG (or the deprecated
# CAP_SYS_ADMIN); without them in its bounding set even root cannot read it.
WITHOUT_KERNEL_LOG = ("setpriv", "--bounding-set", "-syslog,-sys_admin")


def test_without_the_kernel_log_a_neighbours_kill_is_told_by_the_counter(
    tmp_path: Path, pidfile_dir: Path
) -> None:
    """A watched process and an unwatched hog share a cgroup; the hog is OOM-killed."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_SYSLOG")
    pidfile = pidfile_dir / "small.pid"
    config = write_config(tmp_path / "a.toml", pidfile_target(pidfile, threshold=90))
    daemon = DaemonProcess(config, prefix=WITHOUT_KERNEL_LOG)
    try:
        started = daemon.wait_record(lambda r: r["event"] == "daemon_started")
        if started["evidence"]["kmsg"] == "readable":
            pytest.skip("the kernel log stays readable here (kernel.dmesg_restrict=0)")
        with live_memory_cgroup(LIMIT_MB * MIB) as cgroup:
            small = cgroup.spawn("--touch-mb", "8")
            pidfile.write_text(f"{small.pid}\n")
            daemon.wait_record(lambda r: r["event"] == "target_found" and r["pid"] == small.pid)
            hog = cgroup.spawn("--touch-mb", "8", "--grow-mb-per-s", "500", "--grow-to-mb", "4096")
            assert hog.proc.wait(30) == -signal.SIGKILL
            nearby = daemon.wait_record(lambda r: r["event"] == "oom_kill_nearby", timeout=30)
    finally:
        assert daemon.stop() == 0
    assert (nearby["pid"], nearby["victim_pid"], nearby["kills"]) == (small.pid, None, 1)
    kill = nearby["kill"]
    assert kill["sources"] == ["cgroup_counter"], kill
    assert kill["cgroup_oom_kill_after"] == kill["cgroup_oom_kill_before"] + 1
    # The watched process lived on: it is not reported as killed.
    assert not [r for r in daemon.records if r["event"] == "oom_killed"]
    for record in daemon.records:
        validate_record(record)
