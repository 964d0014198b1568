"""One real daemon run whose records carry every section a renderer has to handle.

Two targets, both with sockets: "server", watched at full detail (complete
mapping and connection lists), and "hog", a process in a memory cgroup of its
own that grows until the kernel's OOM killer ends it (summaries, cgroup figures,
the kill and the last snapshot). A SIGHUP in between adds a reload. Needs root
for the cgroup; live_memory_cgroup skips otherwise.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path
from typing import Any

from memdoor.lab.daemon_process import DaemonProcess, write_config
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.workload import MIB
from memdoor.lab.workload_parent import start_workload
from memdoor.system_memory import MemTotal
from tests.pidfiles import trusted_directory

HOG_LIMIT_MB = 256


def _server_mb() -> int:
    """1.5% of RAM: over a 1% threshold whatever the machine."""
    total_kb = MemTotal().kb()
    assert isinstance(total_kb, int), total_kb
    return total_kb * 15 // 1000 // 1024 + 1


def _config(server_pid: int, pidfile: Path) -> str:
    return (
        f'[[target]]\nname = "server"\npid = {server_pid}\nthreshold = 1\n'
        'interval = 0.2\nmin_interval = 0.05\ndetail = "full"\n\n'
        f'[[target]]\nname = "hog"\npidfile = "{pidfile}"\nthreshold = 50\n'
        'threshold_base = "cgroup"\ninterval = 0.2\nmin_interval = 0.05\n'
    )


def record_daemon_run(directory: Path) -> list[dict[str, Any]]:
    """Every record the daemon wrote, in order, from start to clean stop."""
    with contextlib.ExitStack() as stack:
        pidfile = stack.enter_context(trusted_directory()) / "hog.pid"
        server = start_workload("--touch-mb", _server_mb(), "--sockets", "--tcp-pairs", 2)
        stack.callback(server.stop)
        daemon = DaemonProcess(write_config(directory / "run.toml", _config(server.pid, pidfile)))
        stack.callback(daemon.stop)
        daemon.wait_record(lambda r: r["event"] == "threshold_crossed" and r["target"] == "server")
        daemon.wait_record(lambda r: r["event"] == "target_waiting" and r["target"] == "hog")
        daemon.signal(signal.SIGHUP)
        daemon.wait_record(lambda r: r["event"] == "config_reloaded")
        with live_memory_cgroup(HOG_LIMIT_MB * MIB) as cgroup:
            hog = cgroup.spawn(
                "--touch-mb", "16", "--grow-mb-per-s", "100", "--grow-to-mb", "4096", "--sockets"
            )
            pidfile.write_text(f"{hog.pid}\n")
            daemon.wait_record(
                lambda r: r["event"] in ("oom_killed", "target_gone") and r["pid"] == hog.pid,
                timeout=30,
            )
        server.stop()
        daemon.wait_record(lambda r: r["event"] == "target_gone" and r["target"] == "server")
        assert daemon.stop() == 0, daemon.stderr
    return daemon.records
