"""Proof that the container fixture gives a systemd that behaves like a real host's.

memdoor's end-to-end tests rely on exactly these behaviours: Type=notify readiness with
STATUS=, stdout in the journal, the watchdog killing a silent service, and a memory limit
the kernel really enforces with its OOM killer.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any, Optional

import pytest

from tests.system.container import (
    Container,
    booted_container,
    field_text,
    missing_requirements,
    poll_until,
)

pytestmark = pytest.mark.system

# Runs with the test interpreter (visible inside through the overlay), which has sdnotify.
NOTIFY_SCRIPT = """\
import sys, time
import sdnotify

marker, pings = sys.argv[1], int(sys.argv[2])
notifier = sdnotify.SystemdNotifier()
print(marker, flush=True)
notifier.notify("STATUS=" + marker)
notifier.notify("READY=1")
for _ in range(pings):
    notifier.notify("WATCHDOG=1")
    time.sleep(1)
time.sleep(3600)
"""
SCRIPT_PATH = "/usr/local/lib/memdoor-test/notify.py"

# Allocates and touches 1 MiB at a time: bytes * n writes every page, so the memory is
# really charged to the cgroup (an untouched bytearray could stay unbacked).
HOG = "chunks = []\nwhile True:\n    chunks.append(b'x' * (1 << 20))\n"


def _notify_unit(container: Container, name: str, marker: str, pings: int, extra: str) -> str:
    unit = f"{name}.service"
    container.write_file(SCRIPT_PATH, NOTIFY_SCRIPT)
    container.write_file(
        f"/etc/systemd/system/{unit}",
        "[Service]\n"
        "Type=notify\n"
        f"ExecStart={sys.executable} {SCRIPT_PATH} {marker} {pings}\n"
        # A broken notify path must fail the test quickly, not after the default 90 s.
        "TimeoutStartSec=20s\n"
        f"{extra}",
    )
    container.run("systemctl", "daemon-reload")
    return unit


def test_systemd_is_pid_1(container: Container) -> None:
    assert container.run("cat", "/proc/1/comm").stdout.strip() == "systemd"
    exe = container.run("readlink", "-f", "/proc/1/exe").stdout.strip()
    assert exe == os.path.realpath("/lib/systemd/systemd")
    state = container.run("systemctl", "is-system-running", check=False).stdout.strip()
    assert state in ("running", "degraded")
    # Its cgroup tree is a private subtree: PID 1 sees itself near the root of it.
    assert "0::/init.scope" in container.run("cat", "/proc/1/cgroup").stdout.splitlines()


def test_notify_unit_is_active_with_status_and_stdout_in_journal(
    container: Container, stop_afterwards: list[str]
) -> None:
    marker = f"memdoor-smoke-{uuid.uuid4().hex}"
    unit = _notify_unit(container, "smoke-notify", marker, pings=0, extra="")
    stop_afterwards.append(unit)
    container.run("systemctl", "start", unit)

    shown = container.show(unit, "ActiveState", "SubState", "StatusText")
    assert shown == {"ActiveState": "active", "SubState": "running", "StatusText": marker}

    def stdout_entry() -> Optional[dict[str, Any]]:
        entries = container.journal_entries("-u", unit)
        return next((e for e in entries if field_text(e.get("MESSAGE")) == marker), None)

    entry = poll_until(stdout_entry, 20, f"{marker} in the journal of {unit}")
    assert entry["_TRANSPORT"] == "stdout"
    assert entry["_SYSTEMD_UNIT"] == unit


def test_watchdog_kills_a_unit_that_stops_pinging(
    container: Container, stop_afterwards: list[str]
) -> None:
    unit = _notify_unit(container, "smoke-watchdog", "pinging", pings=2, extra="WatchdogSec=3\n")
    stop_afterwards.append(unit)
    container.run("systemctl", "start", unit)

    def result() -> Optional[dict[str, str]]:
        shown = container.show(unit, "Result", "ActiveState", "ExecMainStatus")
        return shown if shown["ActiveState"] == "failed" else None

    shown = poll_until(result, 30, f"{unit} to fail")
    assert shown["Result"] == "watchdog"
    # WatchdogSignal= defaults to SIGABRT, so the kill is told apart from any other.
    assert shown["ExecMainStatus"] == "6"
    journal = container.run("journalctl", "-u", unit, "-o", "cat").stdout
    assert "Watchdog timeout" in journal


def test_memory_max_ends_in_a_kernel_oom_kill(
    container: Container, stop_afterwards: list[str]
) -> None:
    unit = f"smoke-oom-{uuid.uuid4().hex[:8]}.service"
    stop_afterwards.append(unit)
    container.run(
        "systemd-run",
        f"--unit={unit}",
        "--property=MemoryMax=64M",
        "--wait",
        "/usr/bin/python3",
        "-c",
        HOG,
        check=False,
        timeout=120,
    )

    shown = container.show(unit, "Result", "ExecMainCode", "ExecMainStatus")
    # On this hybrid host systemd cannot see memory.events (cgroup2 has no memory
    # controller), so the result is "signal", not "oom-kill": status 9 is the SIGKILL.
    assert shown == {"Result": "signal", "ExecMainCode": "2", "ExecMainStatus": "9"}

    def kernel_log() -> Optional[str]:
        kernel = container.run("journalctl", "-k", "-o", "cat", "--no-pager").stdout
        return kernel if _oom_victim_pid(kernel, unit) is not None else None

    kernel = poll_until(kernel_log, 20, f"the kernel's OOM report for {unit}")
    pid = _oom_victim_pid(kernel, unit)
    assert f"Memory cgroup out of memory: Killed process {pid} (python3)" in kernel


def _oom_victim_pid(kernel_log: str, unit: str) -> Optional[str]:
    """The host pid in the kernel's `oom-kill:` summary line for the unit's memory cgroup.

    The kernel prints the cgroup path from the host's hierarchy root, which ends in the
    unit's path inside the container; the pid is the host's, not the container's.
    """
    for line in kernel_log.splitlines():
        if line.startswith("oom-kill:"):
            fields = dict(item.partition("=")[::2] for item in line[len("oom-kill:") :].split(","))
            if fields.get("task_memcg", "").endswith(f"/system.slice/{unit}"):
                assert fields["constraint"] == "CONSTRAINT_MEMCG"
                return fields["pid"]
    return None


def test_teardown_leaves_no_process_cgroup_mount_or_directory() -> None:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    with booted_container("memdoor-teardown") as container:
        pid1 = container.pid1
        pid_namespace = os.stat(f"/proc/{pid1}/ns/pid").st_ino
        mount_namespace = os.stat(f"/proc/{pid1}/ns/mnt").st_ino
        cgroup_dirs = container.cgroup_dirs
        scratch = container.scratch_dir
        assert all(directory.is_dir() for directory in cgroup_dirs)

    assert [d for d in cgroup_dirs if d.exists()] == []
    assert not scratch.exists()
    # No process anywhere is left in the container's namespaces (a process keeps a mount
    # namespace, and with it every mount of the container, alive).
    survivors = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                inodes = {os.stat(entry / "ns" / ns).st_ino for ns in ("pid", "mnt")}
            except OSError:
                continue
            if inodes & {pid_namespace, mount_namespace}:
                survivors.append(entry.name)
    assert survivors == []
    assert str(scratch) not in Path("/proc/self/mountinfo").read_text()
