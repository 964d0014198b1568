"""memdoor@myapp as shipped, on systemd 252 with pure cgroup v2: the users' platform.

One instance for the module, enabled with `systemctl enable --now`, watching three
targets under the config users are told to write for a service (cgroup base):
- `oomer`: the process behind /run/oomer.pid, in a `MemoryMax=` unit the kernel
  OOM-kills three times (systemd restarts it and rewrites the pidfile each time);
- `bigmaps`: a workload with 10,000 mappings at detail = "full", whose record is MBs;
- `sockets`: a workload of another user (nobody) holding loopback sockets.
Then reload, good and broken, and the watchdog restarting a wedged instance.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import pytest

from tests.record_schema import validate_record
from tests.system.container import field_text, poll_until
from tests.system.memdoor_units import (
    UNIT_CAPABILITIES,
    memdoor_records,
    proc_status,
    start_as_nobody,
    start_workload,
    wait_for_record,
)
from tests.vm.machine import VirtualMachine
from tests.vm.oom_units import KILLS, LEAK, kernel_killed_pids, moment, oomer_unit, verdicts

pytestmark = pytest.mark.vm

MEMDOOR = "memdoor@myapp.service"
CONFIG = "/etc/memdoor/myapp.toml"
OOMER = "oomer"
OOMER_LIMIT_MB = 256
THRESHOLD = 90
BIGMAPS_UNIT = "bigmaps.service"
MAPPINGS = 10_000
SOCKETS_UNIT = "sockets.service"
# Above this, journald's stdout path would have split the line (LineMax=48K) and a
# datagram would have failed (EMSGSIZE): only the sealed-memfd path carries it.
LARGE_RECORD = 1_000_000


@dataclass(frozen=True)
class Started:
    """memdoor@myapp as `systemctl enable --now` left it, and what it watches."""

    right_after_enable: dict[str, str]
    enabled: str
    bigmaps: dict[str, Any]
    sockets: dict[str, Any]


def config_text(bigmaps_pid: int, sockets_pid: int, extra: str = "") -> str:
    return f"""\
[daemon]
threshold = {THRESHOLD}
threshold_base = "cgroup"

[[target]]
name = "{OOMER}"
pidfile = "/run/{OOMER}.pid"
interval = 0.2
min_interval = 0.05

[[target]]
name = "bigmaps"
pid = {bigmaps_pid}
threshold = 50
detail = "full"
# A full snapshot of 10,000 mappings costs seconds of emulated CPU.
interval = 30.0
min_interval = 30.0

[[target]]
name = "sockets"
pid = {sockets_pid}
threshold = 50
interval = 1.0
min_interval = 1.0
{extra}"""


@pytest.fixture(scope="module")
def myapp(installed_vm: VirtualMachine) -> Iterator[Started]:
    vm = installed_vm
    units = [BIGMAPS_UNIT, SOCKETS_UNIT, MEMDOOR]
    try:
        bigmaps = start_workload(
            vm, BIGMAPS_UNIT, ["--mappings", str(MAPPINGS), "--touch-mb", "80"], ("MemoryMax=128M",)
        )
        sockets = start_workload(
            vm, SOCKETS_UNIT, ["--sockets", "--touch-mb", "40"], ("MemoryMax=64M",)
        )
        vm.write_file(CONFIG, config_text(bigmaps["pid"], sockets["pid"]))
        vm.run("systemctl", "enable", "--now", MEMDOOR, timeout=180)
        # Type=notify: `systemctl start` returned after READY=1, so this is no race.
        right_after = vm.show(
            MEMDOOR, "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts"
        )
        enabled = vm.run("systemctl", "is-enabled", MEMDOOR).stdout.strip()
        yield Started(right_after, enabled, bigmaps, sockets)
    finally:
        for unit in [f"{OOMER}.service", *units]:
            vm.run("systemctl", "disable", "--now", unit, check=False, timeout=120)
            vm.run("systemctl", "reset-failed", unit, check=False)


def test_enable_now_on_cgroup_v2(installed_vm: VirtualMachine, myapp: Started) -> None:
    vm = installed_vm
    assert vm.run("stat", "-fc", "%T", "/sys/fs/cgroup").stdout.strip() == "cgroup2fs"
    assert vm.run("readlink", "/proc/1/exe").stdout.strip() == "/usr/lib/systemd/systemd"
    shown = myapp.right_after_enable
    assert (shown["ActiveState"], shown["SubState"], shown["NRestarts"]) == (
        "active",
        "running",
        "0",
    )
    assert shown["StatusText"].startswith("watching 3 targets"), shown
    assert myapp.enabled == "enabled"
    started = wait_for_record(
        vm,
        (f"_SYSTEMD_UNIT={MEMDOOR}", "MEMDOOR_EVENT=daemon_started"),
        lambda r: r["daemon_pid"] == int(shown["MainPID"]),
        "daemon_started",
    )
    assert started["config"] == CONFIG
    assert started["evidence"]["kmsg"] == "readable"


def test_a_unit_oom_killed_again_and_again_is_reported_every_time(
    installed_vm: VirtualMachine, myapp: Started
) -> None:
    """Every kill crossed before it happened and reported as oom_killed with the cgroup
    counter among the sources, although systemd removes the unit's cgroup (and its
    memory.events) right after each kill."""
    vm = installed_vm
    unit = oomer_unit(vm, OOMER, OOMER_LIMIT_MB, LEAK)
    vm.run("systemctl", "start", unit)
    try:
        found = verdicts(vm, MEMDOOR, OOMER)
    finally:
        vm.run("systemctl", "stop", unit, timeout=120)
    killed = kernel_killed_pids(vm)
    records = memdoor_records(vm, f"_SYSTEMD_UNIT={MEMDOOR}", f"MEMDOOR_TARGET={OOMER}")
    summary = [(r["pid"], r["event"], r.get("kill", {}).get("sources")) for r in found]
    assert [r["pid"] in killed for r in found] == [True] * KILLS, (summary, killed)
    assert [r["event"] for r in found] == ["oom_killed"] * KILLS, summary
    assert [("cgroup_counter" in r["kill"]["sources"]) for r in found] == [True] * KILLS, summary
    for verdict in found:
        kill = verdict["kill"]
        assert "kmsg" in kill["sources"], kill
        assert kill["constraint"] == "CONSTRAINT_MEMCG"
        assert kill["task_memcg"].endswith(f"/system.slice/{unit}"), kill
        crossed = [
            r for r in records if r["pid"] == verdict["pid"] and r["event"] == "threshold_crossed"
        ]
        assert crossed, f"no threshold_crossed for pid {verdict['pid']}"
        assert crossed[0]["cgroup"]["usage_percent"] >= THRESHOLD
        assert crossed[0]["cgroup"]["limit_kb"] == OOMER_LIMIT_MB * 1024
        assert moment(crossed[0]["taken_at"]) < moment(kill["killed_at"])
        last = verdict["last_snapshot"]
        assert last is not None and last["process"]["pid"] == verdict["pid"]
    for record in records:
        validate_record(record)


def test_every_record_reaches_the_journal_whole(
    installed_vm: VirtualMachine, myapp: Started
) -> None:
    vm = installed_vm
    big = wait_for_record(
        vm,
        ("MEMDOOR_TARGET=bigmaps", "MEMDOOR_EVENT=threshold_crossed"),
        lambda r: True,
        "the full snapshot of bigmaps",
        timeout=120,
    )
    assert len(big["mappings"]) >= MAPPINGS

    entries = vm.journal_entries("-u", MEMDOOR)
    assert [e for e in entries if "_LINE_BREAK" in e] == []
    daemon = [
        e
        for e in entries
        if e["_TRANSPORT"] == "journal" and e.get("SYSLOG_IDENTIFIER") == "memdoor"
    ]
    assert len(daemon) > 3
    sizes = []
    for entry in daemon:
        text = field_text(entry["MEMDOOR_RECORD"])
        record = json.loads(text)
        validate_record(record)
        assert entry["MEMDOOR_EVENT"] == record["event"]
        assert field_text(entry["MESSAGE"]) == record["message"]
        if record["target"] == "bigmaps" and record["event"] == "threshold_crossed":
            sizes.append(len(text.encode()))
    assert len(sizes) == 1 and sizes[0] > LARGE_RECORD, sizes


def test_another_users_process_is_read_under_the_hardened_unit(
    installed_vm: VirtualMachine, myapp: Started
) -> None:
    vm = installed_vm
    workload = myapp.sockets
    assert proc_status(vm, str(workload["pid"]))["Uid"] == "65534 65534 65534 65534"
    record = wait_for_record(
        vm,
        ("MEMDOOR_TARGET=sockets", "MEMDOOR_EVENT=threshold_crossed"),
        lambda r: True,
        "a snapshot of the sockets workload",
    )
    assert record["pid"] == workload["pid"]
    assert record.get("problems", []) == []
    memory = record["memory"]
    assert memory["rss_kb"] >= 40 * 1024
    assert memory["pss_kb"] is not None and memory["pss_kb"] > 0
    assert record["mappings_summary"]["resident_known"] is True
    connections = record["connections_summary"]
    assert {c["inode"] for c in connections["listed"]} == {s["inode"] for s in workload["sockets"]}
    daemon = proc_status(vm, myapp.right_after_enable["MainPID"])
    assert "0" not in daemon["Uid"].split()
    capabilities = {key: daemon[key] for key in ("CapEff", "CapPrm", "CapBnd", "CapAmb")}
    assert capabilities == dict.fromkeys(capabilities, UNIT_CAPABILITIES)


def test_reload_applies_a_good_file_and_keeps_the_old_config_on_a_broken_one(
    installed_vm: VirtualMachine, myapp: Started, stop_afterwards: list[str]
) -> None:
    vm = installed_vm
    late_unit = "late.service"
    stop_afterwards.append(late_unit)
    late_pid = int(start_as_nobody(vm, late_unit, ["/usr/bin/sleep", "infinity"]))
    pids = (myapp.bigmaps["pid"], myapp.sockets["pid"])
    late = '\n[[target]]\nname = "late"\nexe = "/usr/bin/sleep"\n'
    vm.write_file(CONFIG, config_text(*pids, extra=late))

    vm.run("systemctl", "reload", MEMDOOR, timeout=120)
    reloaded = wait_for_record(
        vm,
        (f"_SYSTEMD_UNIT={MEMDOOR}", "MEMDOOR_EVENT=config_reloaded"),
        lambda r: True,
        "config_reloaded",
    )
    assert (reloaded["added"], reloaded["removed"], reloaded["changed"]) == (["late"], [], [])
    found = wait_for_record(
        vm, ("MEMDOOR_TARGET=late", "MEMDOOR_EVENT=target_found"), lambda r: True, "late found"
    )
    assert found["pid"] == late_pid

    vm.write_file(CONFIG, config_text(*pids, extra=late + "threshold = 150\n"))
    vm.run("systemctl", "reload", MEMDOOR, timeout=120)
    invalid = wait_for_record(
        vm,
        (f"_SYSTEMD_UNIT={MEMDOOR}", "MEMDOOR_EVENT=config_invalid"),
        lambda r: True,
        "config_invalid",
    )
    assert invalid["file"] == CONFIG
    assert invalid["errors"] == [
        {"key": 'target[3] (name="late").threshold', "reason": "must be between 1 and 99 (got 150)"}
    ]
    shown = vm.show(MEMDOOR, "ActiveState", "MainPID", "NRestarts")
    before = myapp.right_after_enable
    assert shown == {"ActiveState": "active", "MainPID": before["MainPID"], "NRestarts": "0"}

    def sample_after_refusal() -> Optional[dict[str, Any]]:
        records = memdoor_records(vm, "MEMDOOR_TARGET=sockets")
        later = [r for r in records if r["timestamp"] > invalid["timestamp"]]
        return next((r for r in later if r["event"] == "sample"), None)

    poll_until(sample_after_refusal, 60, "a sample of an old target after the refusal")
    status = vm.show(MEMDOOR, "StatusText")["StatusText"]
    assert status.startswith("watching 4 targets"), status


def test_watchdog_restarts_a_wedged_memdoor(
    installed_vm: VirtualMachine, stop_afterwards: list[str]
) -> None:
    vm = installed_vm
    unit = "memdoor@wedged.service"
    target_unit = "wedged-target.service"
    stop_afterwards.extend([unit, target_unit])
    target_pid = int(start_as_nobody(vm, target_unit, ["/usr/bin/sleep", "infinity"]))
    vm.write_file(
        "/etc/memdoor/wedged.toml",
        f'[[target]]\nname = "wedged"\npid = {target_pid}\ninterval = 0.5\n',
    )
    # Short enough for a quick test, long enough for an emulated CPU; no core file.
    vm.write_file(
        f"/etc/systemd/system/{unit}.d/watchdog.conf",
        "[Service]\nWatchdogSec=5s\nLimitCORE=0\n",
    )
    vm.run("systemctl", "daemon-reload")
    vm.run("systemctl", "start", unit, timeout=180)
    first_pid = vm.show(unit, "MainPID")["MainPID"]
    wait_for_record(
        vm,
        ("MEMDOOR_TARGET=wedged", "MEMDOOR_EVENT=target_found"),
        lambda r: True,
        "memdoor watching the target",
    )
    # A stopped process runs no event loop: no more WATCHDOG=1.
    vm.run("kill", "-STOP", first_pid)

    def restarted() -> Optional[dict[str, str]]:
        shown = vm.show(unit, "ActiveState", "MainPID", "NRestarts")
        done = shown["ActiveState"] == "active" and shown["NRestarts"] == "1"
        return shown if done else None

    shown = poll_until(restarted, 120, f"{unit} to be killed by the watchdog and restarted")
    assert shown["MainPID"] not in ("0", first_pid)
    journal = vm.run("journalctl", "-u", unit, "-o", "cat").stdout
    assert "Watchdog timeout (limit 5s)!" in journal
    assert f"Killing process {first_pid} (memdoor) with signal SIGABRT." in journal
    assert "Failed with result 'watchdog'." in journal

    def watching_again() -> Optional[list[dict[str, Any]]]:
        records = memdoor_records(vm, f"_SYSTEMD_UNIT={unit}", f"_PID={shown['MainPID']}")
        return records if any(r["event"] == "target_found" for r in records) else None

    records = poll_until(watching_again, 60, "the restarted memdoor watching again")
    assert records[0]["event"] == "daemon_started"
    assert next(r for r in records if r["event"] == "target_found")["pid"] == target_pid
