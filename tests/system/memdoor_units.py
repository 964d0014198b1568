"""memdoor installed in a test container, the processes it watches there, and its records.

Shared by the modules that run memdoor under the container's systemd, and by tests/vm,
whose cgroup v2 VM is driven through the same SystemdMachine interface: the install is the
documented one (packaging/install.sh from this checkout, visible inside through the
overlay), targets run as `nobody` in units of their own, and records are read back the way
an operator would, from the journal's MEMDOOR_* fields.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

from tests.system.container import SystemdMachine, field_text, poll_until

CHECKOUT = Path(__file__).resolve().parents[2]
INSTALL = CHECKOUT / "packaging" / "install.sh"
# Standard library only, so it runs as a lone file under the container's own python3.
WORKLOAD = CHECKOUT / "memdoor" / "lab" / "workload.py"
# Scripts the tests put inside the container; readable by every user.
HELPERS = "/usr/local/lib/memdoor-test"
WORKLOAD_IN_CONTAINER = f"{HELPERS}/workload.py"

# The unit's CapabilityBoundingSet=/AmbientCapabilities=, as /proc/PID/status prints a
# capability set: CAP_DAC_READ_SEARCH (2), CAP_SYS_PTRACE (19) and CAP_SYSLOG (34).
UNIT_CAPABILITIES = f"{(1 << 2) | (1 << 19) | (1 << 34):016x}"

# The lab workload holds its state until stdin reaches EOF, and a unit's stdin is
# /dev/null. This keeps a pipe's write end open across the exec, so stdin never ends and
# the workload is the unit's main process (same pid) until systemd stops it. No `$`:
# systemd would expand it in ExecStart= arguments.
_STDIN_KEEPER = (
    "import os, sys; read, write = os.pipe(); os.dup2(read, 0); os.set_inheritable(write, True);"
    " os.execv(sys.executable, [sys.executable] + sys.argv[1:])"
)


def install_memdoor(container: SystemdMachine) -> None:
    result = container.run(str(INSTALL), timeout=900)
    assert "installed: /usr/local/lib/systemd/system/memdoor@.service" in result.stdout


def start_as_nobody(
    container: SystemdMachine, unit: str, argv: list[str], properties: tuple[str, ...] = ()
) -> str:
    """A long-running process in its own unit, as `nobody`: not root, not memdoor's user.
    Returns its pid inside the container."""
    options = [f"--property={p}" for p in properties]
    container.run("systemd-run", f"--unit={unit}", "--uid=nobody", *options, *argv)
    shown = container.show(unit, "MainPID", "SubState")
    assert shown["SubState"] == "running", container.run("journalctl", "-u", unit).stdout
    return shown["MainPID"]


def start_workload(
    container: SystemdMachine, unit: str, args: list[str], properties: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The lab workload as `nobody` in its own unit; returns its ready line (pid, sockets,
    mappings), which it prints to stdout, i.e. to the unit's journal, once its state exists."""
    container.copy_in(WORKLOAD, WORKLOAD_IN_CONTAINER)
    argv = ["/usr/bin/python3", "-c", _STDIN_KEEPER, WORKLOAD_IN_CONTAINER, *args]
    pid = start_as_nobody(container, unit, argv, properties)

    def ready_line() -> Optional[dict[str, Any]]:
        for entry in container.journal_entries("-u", unit):
            message = field_text(entry.get("MESSAGE", ""))
            if message.startswith("{"):
                ready: dict[str, Any] = json.loads(message)
                return ready
        return None

    ready = poll_until(ready_line, 60, f"the ready line of {unit}")
    assert str(ready["pid"]) == pid
    return ready


def memdoor_records(container: SystemdMachine, *match: str) -> list[dict[str, Any]]:
    """The record in each matching native journal entry, parsed, in journal order."""
    return [
        json.loads(field_text(entry["MEMDOOR_RECORD"]))
        for entry in container.journal_entries(*match)
        if "MEMDOOR_RECORD" in entry
    ]


def wait_for_record(
    container: SystemdMachine,
    match: tuple[str, ...],
    wanted: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 60,
) -> dict[str, Any]:
    """The first record matching the journal fields in `match` that `wanted` accepts."""

    def found() -> Optional[dict[str, Any]]:
        return next((r for r in memdoor_records(container, *match) if wanted(r)), None)

    return poll_until(found, timeout, what)


def proc_status(container: SystemdMachine, pid: str) -> dict[str, str]:
    """/proc/PID/status inside the container as key -> value (whitespace collapsed)."""
    lines = container.run("cat", f"/proc/{pid}/status").stdout.splitlines()
    pairs = (line.partition(":") for line in lines)
    return {key: " ".join(value.split()) for key, _, value in pairs}
