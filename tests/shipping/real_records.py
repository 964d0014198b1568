"""Real memdoor records in a real journal: the daemon watching a process the OOM killer ends.

The shipping, fleet and catalog tests all need the same evidence an operator
would ship: small records (start, found, samples) and, the ones that matter,
the threshold_crossed snapshot and the oom_killed record that carries the last
snapshot. Everything here is produced for real: the lab workload
(memdoor/lab/workload.py) grows in a memory cgroup the test creates
(memdoor/lab/memory_cgroup.py) until the kernel kills it, and the daemon
sends native entries to the journald whose socket it is given.

A target with detail = "full" on a workload with many mappings makes the
multi-megabyte records; several targets may watch the same process through
the same pidfile, so one kill yields small and large records at once.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memdoor.lab.daemon_process import DaemonProcess, write_config
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.workload import MIB
from tests.pidfiles import trusted_directory

LIMIT_MB = 256
# Full snapshots of the workload's mappings are several MB of JSON.
MANY_MAPPINGS = 20000
_KILL_TIMEOUT = 60


@dataclass(frozen=True)
class Watch:
    """One [[target]] on the victim: its name and how much of a snapshot it records."""

    name: str
    detail: str = "summary"


@dataclass(frozen=True)
class OomRun:
    """What one run produced: every record the daemon wrote, in order, and the victim."""

    records: list[dict[str, Any]]
    victim_pid: int


def _config(pidfile: Path, socket_path: str, watches: Sequence[Watch]) -> str:
    text = f'[sinks.journald]\nenabled = true\nsocket = "{socket_path}"\n'
    for watch in watches:
        text += (
            f'[[target]]\nname = "{watch.name}"\npidfile = "{pidfile}"\nthreshold = 50\n'
            'threshold_base = "cgroup"\ninterval = 0.2\nmin_interval = 0.05\n'
            f'detail = "{watch.detail}"\n'
        )
    return text


def event_of(target: str, *events: str) -> Callable[[dict[str, Any]], bool]:
    """A wait_record predicate: one of events, about target."""

    def matches(record: dict[str, Any]) -> bool:
        return record["event"] in events and record["target"] == target

    return matches


def record_oom_kill(
    tmp_path: Path, socket_path: str, watches: Sequence[Watch], mappings: int = 0
) -> OomRun:
    """Run the daemon until every watch has reported the kill, then stop it cleanly.

    The daemon's stdout and the journal get the same record text, so the
    returned records (parsed from stdout) are what the journal must hold, in
    order, ending with daemon_stopping.
    """
    with trusted_directory() as pidfile_home:
        pidfile = pidfile_home / "victim.pid"
        config = write_config(tmp_path / "oom.toml", _config(pidfile, socket_path, watches))
        daemon = DaemonProcess(config)
        try:
            for watch in watches:
                daemon.wait_record(event_of(watch.name, "target_waiting"))
            with live_memory_cgroup(LIMIT_MB * MIB) as cgroup:
                victim = cgroup.spawn(
                    "--mappings",
                    mappings,
                    "--touch-mb",
                    16,
                    "--grow-mb-per-s",
                    100,
                    "--grow-to-mb",
                    4096,
                )
                pidfile.write_text(f"{victim.pid}\n")
                for watch in watches:
                    daemon.wait_record(
                        event_of(watch.name, "oom_killed", "target_gone"), timeout=_KILL_TIMEOUT
                    )
                status = victim.proc.wait(_KILL_TIMEOUT)
        finally:
            code = daemon.stop()
    assert code == 0, daemon.stderr
    assert status == -signal.SIGKILL, status
    ends = [r for r in daemon.records if r["event"] in ("oom_killed", "target_gone")]
    assert [r["event"] for r in ends] == ["oom_killed"] * len(watches), ends
    assert daemon.records[-1]["event"] == "daemon_stopping"
    return OomRun(daemon.records, victim.pid)


def record_idle_run(tmp_path: Path, socket_path: str) -> list[dict[str, Any]]:
    """A daemon with no targets started and stopped: a few small real records, quickly."""
    config = write_config(
        tmp_path / "idle.toml", f'[sinks.journald]\nenabled = true\nsocket = "{socket_path}"\n'
    )
    daemon = DaemonProcess(config)
    try:
        daemon.wait_record(lambda r: r["event"] == "daemon_started")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.stderr
    assert daemon.records[-1]["event"] == "daemon_stopping"
    return daemon.records
