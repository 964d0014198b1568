"""memdoor@myapp's scenarios that run the same on cgroup v1 and on cgroup v2.

tests/system/test_memdoor_e2e.py runs them in the container (systemd on this host's
hybrid cgroups), tests/vm/test_v2_service.py in the Debian 12 VM (pure cgroup v2, often
under software emulation). Each scenario takes the machine and what really differs
between the two: how long the machine gets (:class:`Pace`), the first target of the
config (what each one OOM-kills, and how it finds it) and the workload's size. What
differs because v1 and v2 behave differently (how an OOM kill is told) stays in the
test modules.

The instance is memdoor@myapp under the shipped, hardened unit, watching three targets:
the machine's own first target, `bigmaps` (a workload with thousands of mappings at
detail = "full", whose snapshot record is MBs and must reach the journal as one entry)
and `sockets` (a workload holding loopback sockets). Both workloads run as `nobody` in
units with their own MemoryMax=, and every target measures against its cgroup's limit,
so what crosses the threshold does not depend on the machine's RAM.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

from tests.record_schema import validate_record
from tests.system.container import SystemdMachine, field_text, poll_until
from tests.system.memdoor_units import (
    UNIT_CAPABILITIES,
    memdoor_records,
    proc_status,
    start_as_nobody,
    start_workload,
    wait_for_record,
)

MEMDOOR = "memdoor@myapp.service"
CONFIG = "/etc/memdoor/myapp.toml"
BIGMAPS_UNIT = "bigmaps.service"
SOCKETS_UNIT = "sockets.service"
# The workloads' own threshold, whatever the daemon's: they sit at 80 MiB of 128M and
# 40 MiB of 64M, above it from the start.
WORKLOAD_THRESHOLD = 50
# Above a record this size journald's stdout path would have split the line (LineMax=
# 48K) and a datagram would have failed (EMSGSIZE): only the sealed-memfd path carries it.
LARGE_RECORD = 1_000_000


@dataclass(frozen=True)
class Pace:
    """How long a machine gets, in seconds: the VM under software emulation runs several
    times slower than the container, and every bound is a bound on a hang, not a timing."""

    start: float  # `systemctl start` of a memdoor instance: returns at READY=1
    command: float  # other systemctl commands that wait for memdoor (reload, stop)
    record: float  # a record memdoor writes, or a state systemd reaches, on its own
    # WatchdogSec= of the wedged instance: short for a quick test, long enough that a
    # memdoor that is not wedged pings in time on this machine's CPU.
    watchdog_s: int


def first_record(
    machine: SystemdMachine, match: tuple[str, ...], what: str, pace: Pace
) -> dict[str, Any]:
    """The first record matching the journal fields in `match`, whatever it holds."""
    return wait_for_record(machine, match, lambda r: True, what, timeout=pace.record)


@dataclass(frozen=True)
class MyappConfig:
    """/etc/memdoor/myapp.toml but the workloads' pids, which are known only once they run."""

    threshold: int
    # The [[target]] table of what the machine's own test OOM-kills.
    first_target: str
    # A full snapshot of thousands of mappings costs CPU (seconds of it, emulated).
    bigmaps_interval: float

    def text(self, bigmaps_pid: int, sockets_pid: int, extra: str = "") -> str:
        return f"""\
[daemon]
threshold = {self.threshold}
threshold_base = "cgroup"

{self.first_target}
[[target]]
name = "bigmaps"
pid = {bigmaps_pid}
threshold = {WORKLOAD_THRESHOLD}
detail = "full"
interval = {self.bigmaps_interval}
min_interval = {self.bigmaps_interval}

[[target]]
name = "sockets"
pid = {sockets_pid}
threshold = {WORKLOAD_THRESHOLD}
interval = 1.0
min_interval = 1.0
{extra}"""


@dataclass(frozen=True)
class Started:
    """memdoor@myapp as `systemctl enable --now` left it, and what it watches."""

    right_after_enable: dict[str, str]
    status_output: str
    enabled: str
    bigmaps: dict[str, Any]
    sockets: dict[str, Any]
    config: MyappConfig

    def config_text(self, extra: str = "") -> str:
        return self.config.text(self.bigmaps["pid"], self.sockets["pid"], extra)


@contextlib.contextmanager
def enabled_myapp(
    machine: SystemdMachine, config: MyappConfig, mappings: int, first_unit: str, pace: Pace
) -> Iterator[Started]:
    """Both workloads started, memdoor@myapp enabled with `--now`; afterwards every unit
    stopped, `first_unit` (what the first target runs in) with them."""
    try:
        bigmaps = start_workload(
            machine,
            BIGMAPS_UNIT,
            ["--mappings", str(mappings), "--touch-mb", "80"],
            ("MemoryMax=128M",),
        )
        sockets = start_workload(
            machine, SOCKETS_UNIT, ["--sockets", "--touch-mb", "40"], ("MemoryMax=64M",)
        )
        machine.write_file(CONFIG, config.text(bigmaps["pid"], sockets["pid"]))
        machine.run("systemctl", "enable", "--now", MEMDOOR, timeout=pace.start)
        # Read at once: Type=notify makes `systemctl start` wait for READY=1, so memdoor
        # must already be active with its STATUS= set, not still "activating".
        right_after = machine.show(
            MEMDOOR, "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts"
        )
        status = machine.run("systemctl", "status", "--no-pager", MEMDOOR).stdout
        enabled = machine.run("systemctl", "is-enabled", MEMDOOR).stdout.strip()
        yield Started(right_after, status, enabled, bigmaps, sockets, config)
    finally:
        machine.stop_units([first_unit, BIGMAPS_UNIT, SOCKETS_UNIT, MEMDOOR], pace.command)


def enable_now_returns_once_ready(machine: SystemdMachine, myapp: Started, pace: Pace) -> None:
    shown = myapp.right_after_enable
    assert (shown["ActiveState"], shown["SubState"], shown["NRestarts"]) == (
        "active",
        "running",
        "0",
    )
    assert shown["StatusText"].startswith("watching 3 targets"), shown
    assert myapp.enabled == "enabled"
    # The count of records at the end of the line moves on; the rest is memdoor's STATUS=.
    assert 'Status: "watching 3 targets (' in myapp.status_output
    started = wait_for_record(
        machine,
        (f"_SYSTEMD_UNIT={MEMDOOR}", f"_PID={shown['MainPID']}"),
        lambda r: r["event"] == "daemon_started",
        "daemon_started",
        timeout=pace.record,
    )
    assert started["daemon_pid"] == int(shown["MainPID"])
    assert started["config"] == CONFIG
    # The unit's sandbox lets memdoor follow the kernel log, the OOM kills' evidence.
    assert started["evidence"]["kmsg"] == "readable"


def every_record_reaches_the_journal_whole(
    machine: SystemdMachine, mappings: int, pace: Pace
) -> None:
    big = first_record(
        machine,
        ("MEMDOOR_TARGET=bigmaps", "MEMDOOR_EVENT=threshold_crossed"),
        "the full snapshot of bigmaps",
        pace,
    )
    assert len(big["mappings"]) >= mappings
    assert all(m["rss_kb"] is not None for m in big["mappings"])

    entries = machine.journal_entries("-u", MEMDOOR)
    # Lines journald had to cut (stdout over LineMax=) would carry this mark.
    assert [e for e in entries if "_LINE_BREAK" in e] == []
    # With the journal sink on, records are not also written to stdout.
    stdout = [field_text(e["MESSAGE"]) for e in entries if e["_TRANSPORT"] == "stdout"]
    assert [line for line in stdout if line.startswith("{")] == []
    daemon = [
        e
        for e in entries
        if e["_TRANSPORT"] == "journal" and e.get("SYSLOG_IDENTIFIER") == "memdoor"
    ]
    assert len(daemon) > 3
    big_sizes = []
    for entry in daemon:
        text = field_text(entry["MEMDOOR_RECORD"])
        record = json.loads(text)
        validate_record(record)
        assert entry["MEMDOOR_EVENT"] == record["event"]
        assert field_text(entry["MESSAGE"]) == record["message"]
        if record["target"] == "bigmaps" and record["event"] == "threshold_crossed":
            big_sizes.append(len(text.encode()))
    big_entries = [
        e
        for e in daemon
        if e.get("MEMDOOR_TARGET") == "bigmaps" and e["MEMDOOR_EVENT"] == "threshold_crossed"
    ]
    assert len(big_entries) == 1
    assert len(big_sizes) == 1 and big_sizes[0] > LARGE_RECORD, big_sizes


def another_users_process_is_read_from_the_sandbox(
    machine: SystemdMachine, myapp: Started, pace: Pace
) -> None:
    """The sockets workload runs as nobody; memdoor as its own user, with only the unit's
    capabilities, still reads all of it."""
    workload = myapp.sockets
    assert proc_status(machine, str(workload["pid"]))["Uid"] == "65534 65534 65534 65534"
    record = first_record(
        machine,
        ("MEMDOOR_TARGET=sockets", "MEMDOOR_EVENT=threshold_crossed"),
        "a snapshot of the sockets workload",
        pace,
    )
    assert record["pid"] == workload["pid"]
    assert record.get("problems", []) == []
    memory = record["memory"]
    assert memory["rss_kb"] >= 40 * 1024
    assert memory["pss_kb"] is not None and memory["pss_kb"] > 0
    mappings = record["mappings_summary"]
    assert mappings["resident_known"] is True
    assert mappings["total"]["count"] > 0 and mappings["groups"]
    assert mappings["total"]["rss_kb"] >= 40 * 1024
    connections = record["connections_summary"]
    assert connections["total"] == len(workload["sockets"])
    listed = {c["inode"] for c in connections["listed"]}
    assert listed == {s["inode"] for s in workload["sockets"]}
    assert connections["by_state"]["tcp LISTEN"] == 1

    daemon = proc_status(machine, myapp.right_after_enable["MainPID"])
    assert "0" not in daemon["Uid"].split()
    capabilities = {key: daemon[key] for key in ("CapEff", "CapPrm", "CapBnd", "CapAmb")}
    assert capabilities == dict.fromkeys(capabilities, UNIT_CAPABILITIES)


def reload_with(machine: SystemdMachine, config: str, event: str, pace: Pace) -> dict[str, Any]:
    """Write `config` to memdoor@myapp's file, reload it, and return memdoor's answer: the
    first record of `event`."""
    machine.write_file(CONFIG, config)
    machine.run("systemctl", "reload", MEMDOOR, timeout=pace.command)
    return first_record(
        machine, (f"_SYSTEMD_UNIT={MEMDOOR}", f"MEMDOOR_EVENT={event}"), event, pace
    )


def reload_good_then_broken(
    machine: SystemdMachine, myapp: Started, stop_afterwards: list[str], pace: Pace
) -> None:
    """A good file adds a target without a restart; a broken one is refused, and the
    config that runs keeps running."""
    late_unit = "late.service"
    stop_afterwards.append(late_unit)
    late_pid = int(start_as_nobody(machine, late_unit, ["/usr/bin/sleep", "infinity"]))
    late = '\n[[target]]\nname = "late"\nexe = "/usr/bin/sleep"\n'

    reloaded = reload_with(machine, myapp.config_text(extra=late), "config_reloaded", pace)
    assert (reloaded["added"], reloaded["removed"], reloaded["changed"]) == (["late"], [], [])
    found = first_record(
        machine,
        ("MEMDOOR_TARGET=late", "MEMDOOR_EVENT=target_found"),
        "the new target's process",
        pace,
    )
    assert found["pid"] == late_pid

    broken = myapp.config_text(extra=late + "threshold = 150\n")
    invalid = reload_with(machine, broken, "config_invalid", pace)
    assert invalid["file"] == CONFIG
    assert invalid["errors"] == [
        {"key": 'target[3] (name="late").threshold', "reason": "must be between 1 and 99 (got 150)"}
    ]
    shown = machine.show(MEMDOOR, "ActiveState", "MainPID", "NRestarts")
    before = myapp.right_after_enable
    assert shown == {"ActiveState": "active", "MainPID": before["MainPID"], "NRestarts": "0"}

    # The old configuration still runs: its targets keep reporting after the refusal.
    def sample_after_refusal() -> Optional[dict[str, Any]]:
        records = memdoor_records(machine, "MEMDOOR_TARGET=sockets")
        later = [r for r in records if r["timestamp"] > invalid["timestamp"]]
        return next((r for r in later if r["event"] == "sample"), None)

    poll_until(sample_after_refusal, pace.record, "a sample of an old target after the refusal")
    status = machine.show(MEMDOOR, "StatusText")["StatusText"]
    assert status.startswith("watching 4 targets"), status


def watchdog_restarts_a_wedged_memdoor(
    machine: SystemdMachine, stop_afterwards: list[str], pace: Pace
) -> None:
    """A second instance with a short WatchdogSec= drop-in, stopped with SIGSTOP."""
    unit = "memdoor@wedged.service"
    target_unit = "wedged-target.service"
    stop_afterwards.extend([unit, target_unit])
    target_pid = int(start_as_nobody(machine, target_unit, ["/usr/bin/sleep", "infinity"]))
    machine.write_file(
        "/etc/memdoor/wedged.toml",
        f'[[target]]\nname = "wedged"\npid = {target_pid}\ninterval = 0.5\n',
    )
    # No core file from the SIGABRT.
    machine.write_file(
        f"/etc/systemd/system/{unit}.d/watchdog.conf",
        f"[Service]\nWatchdogSec={pace.watchdog_s}s\nLimitCORE=0\n",
    )
    machine.run("systemctl", "daemon-reload")
    machine.run("systemctl", "start", unit, timeout=pace.start)
    first_pid = machine.show(unit, "MainPID")["MainPID"]
    first_record(
        machine,
        ("MEMDOOR_TARGET=wedged", "MEMDOOR_EVENT=target_found"),
        "memdoor watching the target",
        pace,
    )

    # A stopped process runs no event loop: no more WATCHDOG=1.
    machine.run("kill", "-STOP", first_pid)

    def restarted() -> Optional[dict[str, str]]:
        shown = machine.show(unit, "ActiveState", "MainPID", "NRestarts")
        done = shown["ActiveState"] == "active" and shown["NRestarts"] == "1"
        return shown if done else None

    # WatchdogSec=, then the shipped RestartSec=5s.
    shown = poll_until(restarted, pace.record, f"{unit} to be killed by the watchdog and restarted")
    assert shown["MainPID"] not in ("0", first_pid)
    journal = machine.run("journalctl", "-u", unit, "-o", "cat").stdout
    assert f"Watchdog timeout (limit {pace.watchdog_s}s)!" in journal
    assert f"Killing process {first_pid} (memdoor) with signal SIGABRT." in journal
    assert "Failed with result 'watchdog'." in journal

    def watching_again() -> Optional[list[dict[str, Any]]]:
        records = memdoor_records(machine, f"_SYSTEMD_UNIT={unit}", f"_PID={shown['MainPID']}")
        return records if any(r["event"] == "target_found" for r in records) else None

    records = poll_until(watching_again, pace.record, "the restarted memdoor watching again")
    assert records[0]["event"] == "daemon_started"
    found = next(r for r in records if r["event"] == "target_found")
    assert found["pid"] == target_pid
