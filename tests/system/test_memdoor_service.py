"""memdoor installed and run under systemd exactly as an operator would do it.

The container gets memdoor through packaging/install.sh (the checkout is visible inside
through the overlay), then:
- the sandbox probe runs under the shipped unit's hardening and shows memdoor's reads, PSI
  trigger, journal path and pydantic-core all work there, while what it forbids fails;
- the acceptance test enables memdoor@myapp and finds its snapshot records in the journal.

Run the acceptance check on its own with `pytest -m acceptance` (or by file path).
"""

from __future__ import annotations

import json
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
from tests.system.memdoor_units import (
    HELPERS,
    INSTALL,
    UNIT_CAPABILITIES,
    install_memdoor,
    memdoor_records,
    start_as_nobody,
)

pytestmark = pytest.mark.system

PROBE = Path(__file__).with_name("sandbox_probe.py")
PROBE_IN_CONTAINER = f"{HELPERS}/sandbox_probe.py"


def test_shipped_sandbox_allows_what_memdoor_does_and_nothing_else(
    installed: Container, stop_afterwards: list[str]
) -> None:
    target_unit = "memdoor-probe-target.service"
    stop_afterwards.append(target_unit)
    target = start_as_nobody(installed, target_unit, ["/usr/bin/sleep", "infinity"])

    installed.copy_in(PROBE, PROBE_IN_CONTAINER)
    marker = f"memdoor-probe-{uuid.uuid4().hex}"
    target_cgroup = f"/sys/fs/cgroup/memory/system.slice/{target_unit}"
    installed.write_file(
        "/etc/systemd/system/memdoor@probe.service.d/probe.conf",
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart=/opt/memdoor/bin/python {PROBE_IN_CONTAINER} {target} {target_cgroup} "
        f"{marker}\n",
    )
    stop_afterwards.append("memdoor@probe.service")
    installed.run("systemctl", "daemon-reload")
    installed.run("systemctl", "start", "memdoor@probe.service", timeout=120)

    def report() -> Optional[dict[str, Any]]:
        for entry in installed.journal_entries("-u", "memdoor@probe.service"):
            message = field_text(entry.get("MESSAGE", ""))
            if message.startswith("{") and marker in message:
                parsed: dict[str, Any] = json.loads(message)
                return parsed
        return None

    results = poll_until(report, 60, "the probe's report in the journal")["results"]
    assert results.pop("uid") != 0
    assert results.pop("capabilities") == UNIT_CAPABILITIES
    forbidden = {
        "write_etc": "EROFS",  # ProtectSystem=strict
        "inet": "EAFNOSUPPORT",  # RestrictAddressFamilies=AF_UNIX
        "proc_kmsg": "empty",  # InaccessiblePaths=
        "kallsyms": "empty",  # InaccessiblePaths=
        "wx_mapping": "EPERM",  # MemoryDenyWriteExecute=yes (seccomp)
    }
    assert {name: results.pop(name) for name in forbidden} == forbidden
    # Everything else is what memdoor needs, and all of it must work.
    assert {name: value for name, value in results.items() if value != "ok"} == {}

    memfd_entries = installed.journal_entries("MEMDOOR_PROBE=memfd")
    assert [field_text(e["MESSAGE"]) for e in memfd_entries] == [marker]


@pytest.mark.acceptance
def test_memdoor_instance_runs_and_records_reach_the_journal(
    installed: Container, stop_afterwards: list[str]
) -> None:
    # `exe` targets are matched by /proc/PID/exe; perl is in every Debian system
    # (perl-base is essential) and nothing else in the container runs it. Its ballast,
    # 3 % of MemTotal, puts it over `threshold = 1` (percent of system memory) at once;
    # a bare `sleep` (about 1 MB) would never cross it. No `$` in the script: systemd
    # expands $NAME in ExecStart= arguments, transient units included.
    mem_total_kb = next(
        int(line.split()[1])
        for line in installed.run("cat", "/proc/meminfo").stdout.splitlines()
        if line.startswith("MemTotal:")
    )
    ballast = mem_total_kb * 1024 * 3 // 100
    stop_afterwards.append("myapp.service")
    target = start_as_nobody(
        installed, "myapp.service", ["/usr/bin/perl", "-e", f'@x = ("x" x {ballast}); sleep']
    )
    installed.write_file(
        "/etc/memdoor/myapp.toml",
        '[[target]]\nname = "myapp"\nexe = "/usr/bin/perl"\nthreshold = 1\ninterval = 1.0\n',
    )

    stop_afterwards.append("memdoor@myapp.service")
    installed.run("systemctl", "enable", "--now", "memdoor@myapp.service", timeout=120)

    assert installed.run("systemctl", "is-active", "memdoor@myapp.service").stdout == "active\n"
    assert installed.run("systemctl", "is-enabled", "memdoor@myapp.service").stdout == "enabled\n"
    assert installed.show("memdoor@myapp.service", "StatusText")["StatusText"] != ""

    def snapshot() -> Optional[dict[str, Any]]:
        for record in memdoor_records(installed, "MEMDOOR_TARGET=myapp"):
            # A snapshot of the perl process, not just a lifecycle record: it carries the
            # memory section the configuration asked for (all sections by default).
            if str(record.get("pid")) == target and "memory" in record:
                return record
        return None

    record = poll_until(snapshot, 60, f"a MEMDOOR_RECORD snapshot of myapp pid {target}")
    assert record["target"] == "myapp"


@pytest.mark.acceptance
@pytest.mark.parametrize(
    ("name", "config", "mentioned"),
    [
        ("broken", '[[target]]\nname = "broken"\nexe = "/usr/bin/perl"\nthreshold = 150\n', "150"),
        ("missing", None, "/etc/memdoor/missing.toml"),
    ],
    ids=["invalid", "missing"],
)
def test_bad_config_fails_once_with_ex_config_and_is_not_restarted(
    installed: Container,
    stop_afterwards: list[str],
    name: str,
    config: Optional[str],
    mentioned: str,
) -> None:
    if config is not None:
        installed.write_file(f"/etc/memdoor/{name}.toml", config)
    unit = f"memdoor@{name}.service"
    stop_afterwards.append(unit)
    started = installed.run("systemctl", "start", unit, check=False, timeout=120)
    assert started.returncode != 0

    shown = installed.show(unit, "ActiveState", "Result", "ExecMainStatus", "NRestarts")
    # RestartPreventExitStatus=78: "failed" at once, not "activating (auto-restart)".
    assert shown == {
        "ActiveState": "failed",
        "Result": "exit-code",
        "ExecMainStatus": "78",
        "NRestarts": "0",
    }
    journal = installed.run("journalctl", "-u", unit, "-o", "cat").stdout
    assert "config_invalid" in journal
    assert mentioned in journal


@pytest.mark.acceptance
def test_uninstall_on_a_running_system_stops_disables_and_removes() -> None:
    """Its own container: uninstalling would pull memdoor from under the module's tests."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    with booted_container("memdoor-uninstall") as container:
        # The container sees the host's own files: what install.sh did not make stays.
        before = _memdoor_paths(container)
        install_memdoor(container)
        # On PATH, as the README uses it, with its man pages and completion beside it.
        assert container.run("sh", "-c", "command -v memdoor").stdout == "/usr/local/bin/memdoor\n"
        assert container.run("memdoor", "--version").stdout.startswith("memdoor version ")
        assert len(_memdoor_paths(container)) >= len(before) + 5
        container.write_file(
            "/etc/memdoor/a.toml", '[[target]]\nname = "a"\nexe = "/usr/bin/perl"\n'
        )
        container.run("systemctl", "enable", "--now", "memdoor@a.service", timeout=120)
        assert container.show("memdoor@a.service", "ActiveState")["ActiveState"] == "active"

        output = container.run(str(INSTALL), "--uninstall", timeout=120).stdout
        assert "disabled memdoor@a.service" in output

        assert container.show("memdoor@a.service", "LoadState", "ActiveState") == {
            "LoadState": "not-found",
            "ActiveState": "inactive",
        }
        assert _memdoor_paths(container) == before
        # The administrator's configurations stay without --purge.
        assert container.run("ls", "/etc/memdoor").stdout.split() == ["a.toml", "example.toml"]


def _memdoor_paths(container: Container) -> list[str]:
    """Everything named memdoor* where install.sh puts files (bar the configurations)."""
    found = container.run(
        "find",
        "/opt",
        "/usr/local/lib",
        "/usr/local/bin",
        "/usr/local/share",
        "/etc/systemd/system",
        "-name",
        "memdoor*",
    )
    return sorted(found.stdout.splitlines())
