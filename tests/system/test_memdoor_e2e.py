"""memdoor end to end under a real systemd and a real journald, as shipped.

One container and one installation for the module. memdoor@myapp runs under the shipped,
hardened unit with three targets:
- `myapp`: every /usr/bin/perl process; `hog.service` (perl, MemoryMax=256M) starts only
  once memdoor is watching and allocates until the kernel OOM-kills it;
- `bigmaps`: a workload with 20,000 mappings at detail = "full", whose snapshot record is
  several MB and must reach the journal as one entry;
- `sockets`: a workload holding loopback TCP/UDP sockets.
Both workloads run as `nobody` in units with their own MemoryMax=, and every target
measures against its cgroup's limit, so what crosses the threshold does not depend on the
host's RAM. The watchdog test runs a second instance with a short WatchdogSec= drop-in.
A config error at start is tested in test_memdoor_service.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import pytest

from tests.record_schema import validate_record
from tests.system.container import Container, field_text, poll_until
from tests.system.memdoor_units import (
    HELPERS,
    UNIT_CAPABILITIES,
    memdoor_records,
    proc_status,
    start_as_nobody,
    start_workload,
    wait_for_record,
)

pytestmark = pytest.mark.system

MEMDOOR = "memdoor@myapp.service"
CONFIG = "/etc/memdoor/myapp.toml"
HOG_UNIT = "hog.service"
HOG_LIMIT_MB = 256
HOG_SCRIPT = f"{HELPERS}/hog.pl"
# 4 MiB every 50 ms, every page written ("x" x N is a real string): 80 MiB/s crosses half
# of 256 MiB after about 1.6 s and meets the limit about 1.6 s later, time enough for
# memdoor (ticking every 50 ms at the threshold) to snapshot it above the threshold.
HOG = """\
use strict;
my @chunks;
while (1) {
    push @chunks, "x" x (4 << 20);
    select(undef, undef, undef, 0.05);
}
"""
BIGMAPS_UNIT = "bigmaps.service"
MAPPINGS = 20_000
SOCKETS_UNIT = "sockets.service"
THRESHOLD = 50
# Above a record this size journald's stdout path would have split the line (LineMax=
# 48K) and a datagram would have failed (EMSGSIZE): only the sealed-memfd path carries it.
LARGE_RECORD = 1_000_000


@dataclass(frozen=True)
class Started:
    """memdoor@myapp as `systemctl enable --now` left it, and what it watches."""

    right_after_enable: dict[str, str]
    status_output: str
    enabled: str
    bigmaps: dict[str, Any]
    sockets: dict[str, Any]


def config_text(bigmaps_pid: int, sockets_pid: int, extra: str = "") -> str:
    return f"""\
[daemon]
threshold = {THRESHOLD}
threshold_base = "cgroup"

[[target]]
name = "myapp"
exe = "/usr/bin/perl"
interval = 0.2
min_interval = 0.05

[[target]]
name = "bigmaps"
pid = {bigmaps_pid}
detail = "full"
# A full snapshot of 20,000 mappings costs CPU; once every 5 s is plenty here.
interval = 5.0
min_interval = 5.0

[[target]]
name = "sockets"
pid = {sockets_pid}
interval = 1.0
min_interval = 1.0
{extra}"""


@pytest.fixture(scope="module")
def myapp(installed: Container) -> Iterator[Started]:
    units = [BIGMAPS_UNIT, SOCKETS_UNIT, MEMDOOR]
    try:
        bigmaps = start_workload(
            installed,
            BIGMAPS_UNIT,
            ["--mappings", str(MAPPINGS), "--touch-mb", "80"],
            ("MemoryMax=128M",),
        )
        sockets = start_workload(
            installed, SOCKETS_UNIT, ["--sockets", "--touch-mb", "40"], ("MemoryMax=64M",)
        )
        installed.write_file(
            f"/etc/systemd/system/{HOG_UNIT}",
            f"[Service]\nUser=nobody\nMemoryMax={HOG_LIMIT_MB}M\n"
            f"ExecStart=/usr/bin/perl {HOG_SCRIPT}\n",
        )
        installed.run("systemctl", "daemon-reload")
        installed.write_file(CONFIG, config_text(bigmaps["pid"], sockets["pid"]))

        installed.run("systemctl", "enable", "--now", MEMDOOR, timeout=120)
        # Read at once: Type=notify makes `systemctl start` wait for READY=1, so memdoor
        # must already be active with its STATUS= set, not still "activating".
        right_after = installed.show(
            MEMDOOR, "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts"
        )
        status = installed.run("systemctl", "status", "--no-pager", MEMDOOR).stdout
        enabled = installed.run("systemctl", "is-enabled", MEMDOOR).stdout.strip()
        yield Started(right_after, status, enabled, bigmaps, sockets)
    finally:
        for unit in [HOG_UNIT, *units]:
            installed.run("systemctl", "disable", "--now", unit, check=False)
            installed.run("systemctl", "reset-failed", unit, check=False)


def records_of(container: Container, target: str) -> list[dict[str, Any]]:
    return memdoor_records(container, f"MEMDOOR_TARGET={target}")


def test_enable_now_returns_once_memdoor_is_ready(installed: Container, myapp: Started) -> None:
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
        installed,
        (f"_SYSTEMD_UNIT={MEMDOOR}", f"_PID={shown['MainPID']}"),
        lambda r: r["event"] == "daemon_started",
        "daemon_started",
    )
    assert started["daemon_pid"] == int(shown["MainPID"])
    assert started["config"] == CONFIG
    # The unit's sandbox lets memdoor follow the kernel log: the OOM evidence below.
    assert started["evidence"]["kmsg"] == "readable"


def test_oom_kill_of_a_unit_is_reported_with_the_last_snapshot(
    installed: Container, myapp: Started
) -> None:
    wait_for_record(
        installed,
        ("MEMDOOR_TARGET=myapp", "MEMDOOR_EVENT=target_waiting"),
        lambda r: True,
        "memdoor waiting for myapp's process",
    )
    installed.write_file(HOG_SCRIPT, HOG)
    installed.run("systemctl", "start", HOG_UNIT)

    def hog_ended() -> Optional[dict[str, str]]:
        shown = installed.show(HOG_UNIT, "ActiveState", "Result", "ExecMainPID", "ExecMainStatus")
        return shown if shown["ActiveState"] == "failed" else None

    hog = poll_until(hog_ended, 60, f"{HOG_UNIT} to be killed")
    assert (hog["Result"], hog["ExecMainStatus"]) == ("signal", "9"), hog
    hog_pid = int(hog["ExecMainPID"])

    verdict = wait_for_record(
        installed,
        ("MEMDOOR_TARGET=myapp",),
        lambda r: r["event"] in ("oom_killed", "target_gone") and r["pid"] == hog_pid,
        f"memdoor's verdict on hog pid {hog_pid}",
    )
    assert verdict["event"] == "oom_killed", verdict
    kill = verdict["kill"]
    # The unit's cgroup (and its v1 OOM counter) is gone by memdoor's next tick: the
    # kernel log told, and it is matched to the pid although the kernel's pid is the
    # host's (the container has its own pid namespace).
    assert "kmsg" in kill["sources"], kill
    assert (kill["name"], kill["cgroup_kill"], kill["constraint"]) == (
        "perl",
        True,
        "CONSTRAINT_MEMCG",
    )
    assert kill["task_memcg"].endswith(f"/system.slice/{HOG_UNIT}"), kill
    assert kill["anon_rss_kb"] > HOG_LIMIT_MB * 1024 // 2
    last = verdict["last_snapshot"]
    assert last is not None and last["process"]["pid"] == hog_pid
    assert last["age_ms"] >= 0
    assert last["cgroup"]["limit_kb"] == HOG_LIMIT_MB * 1024

    mine = [r for r in records_of(installed, "myapp") if r["pid"] == hog_pid]
    before = mine[: mine.index(verdict)]
    full = [r for r in before if r["event"] in ("threshold_crossed", "snapshot")]
    assert full, [r["event"] for r in mine]
    # A whole snapshot above the threshold, taken before the kill.
    assert {"memory", "cgroup", "tree", "mappings_summary", "process"} <= set(full[0])
    assert full[0]["cgroup"]["usage_percent"] >= THRESHOLD
    assert full[0]["cgroup"]["limit_kb"] == HOG_LIMIT_MB * 1024
    assert full[0]["taken_at"] < kill["killed_at"]
    for record in mine:
        validate_record(record)


def test_a_plain_kill_in_the_same_unit_afterwards_is_no_oom_kill(
    installed: Container, myapp: Started
) -> None:
    """Sharpest after the test above: the kernel log then holds an OOM kill of a `perl` in
    this very cgroup, and in the container's pid namespace memdoor can match a kill only
    by name and cgroup, not by pid. That kill predates this process, so it must not count."""
    installed.run("systemctl", "reset-failed", HOG_UNIT, check=False)
    installed.write_file(HOG_SCRIPT, "sleep 3600;\n")
    installed.run("systemctl", "start", HOG_UNIT)
    pid = int(installed.show(HOG_UNIT, "MainPID")["MainPID"])
    wait_for_record(
        installed,
        ("MEMDOOR_TARGET=myapp", "MEMDOOR_EVENT=target_found"),
        lambda r: r["pid"] == pid,
        f"memdoor watching perl pid {pid}",
    )
    installed.run("systemctl", "kill", "--signal=KILL", HOG_UNIT)
    verdict = wait_for_record(
        installed,
        ("MEMDOOR_TARGET=myapp",),
        lambda r: r["event"] in ("oom_killed", "target_gone") and r["pid"] == pid,
        f"memdoor's verdict on perl pid {pid}",
    )
    assert (verdict["event"], verdict.get("reason")) == ("target_gone", "exited"), verdict


def test_every_record_reaches_the_journal_whole_as_one_entry(
    installed: Container, myapp: Started
) -> None:
    big = wait_for_record(
        installed,
        ("MEMDOOR_TARGET=bigmaps", "MEMDOOR_EVENT=threshold_crossed"),
        lambda r: True,
        "the full snapshot of bigmaps",
    )
    assert len(big["mappings"]) >= MAPPINGS
    assert all(m["rss_kb"] is not None for m in big["mappings"])

    entries = installed.journal_entries("-u", MEMDOOR)
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
    sizes = {}
    for entry in daemon:
        text = field_text(entry["MEMDOOR_RECORD"])
        record = json.loads(text)
        validate_record(record)
        assert entry["MEMDOOR_EVENT"] == record["event"]
        assert field_text(entry["MESSAGE"]) == record["message"]
        sizes[(record["target"], record["event"])] = len(text.encode())
    big_entries = [
        e
        for e in daemon
        if e.get("MEMDOOR_TARGET") == "bigmaps" and e["MEMDOOR_EVENT"] == "threshold_crossed"
    ]
    assert len(big_entries) == 1
    assert sizes[("bigmaps", "threshold_crossed")] > LARGE_RECORD


def test_memdoor_reads_another_users_process_from_its_sandbox(
    installed: Container, myapp: Started
) -> None:
    workload = myapp.sockets
    assert proc_status(installed, str(workload["pid"]))["Uid"] == "65534 65534 65534 65534"
    record = wait_for_record(
        installed,
        ("MEMDOOR_TARGET=sockets", "MEMDOOR_EVENT=threshold_crossed"),
        lambda r: True,
        "a snapshot of the sockets workload",
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

    daemon = proc_status(installed, myapp.right_after_enable["MainPID"])
    assert "0" not in daemon["Uid"].split()
    capabilities = {key: daemon[key] for key in ("CapEff", "CapPrm", "CapBnd", "CapAmb")}
    assert capabilities == dict.fromkeys(capabilities, UNIT_CAPABILITIES)


def test_reload_applies_a_new_target_and_keeps_running_on_a_broken_file(
    installed: Container, myapp: Started, stop_afterwards: list[str]
) -> None:
    late_unit = "late.service"
    stop_afterwards.append(late_unit)
    late_pid = int(start_as_nobody(installed, late_unit, ["/usr/bin/sleep", "infinity"]))
    pids = (myapp.bigmaps["pid"], myapp.sockets["pid"])
    late = '\n[[target]]\nname = "late"\nexe = "/usr/bin/sleep"\n'
    installed.write_file(CONFIG, config_text(*pids, extra=late))

    installed.run("systemctl", "reload", MEMDOOR)
    reloaded = wait_for_record(
        installed,
        (f"_SYSTEMD_UNIT={MEMDOOR}", "MEMDOOR_EVENT=config_reloaded"),
        lambda r: True,
        "config_reloaded",
    )
    assert (reloaded["added"], reloaded["removed"], reloaded["changed"]) == (["late"], [], [])
    found = wait_for_record(
        installed,
        ("MEMDOOR_TARGET=late", "MEMDOOR_EVENT=target_found"),
        lambda r: True,
        "the new target's process",
    )
    assert found["pid"] == late_pid

    installed.write_file(CONFIG, config_text(*pids, extra=late + "threshold = 150\n"))
    installed.run("systemctl", "reload", MEMDOOR)
    invalid = wait_for_record(
        installed,
        (f"_SYSTEMD_UNIT={MEMDOOR}", "MEMDOOR_EVENT=config_invalid"),
        lambda r: True,
        "config_invalid",
    )
    assert invalid["file"] == CONFIG
    assert invalid["errors"] == [
        {"key": 'target[3] (name="late").threshold', "reason": "must be between 1 and 99 (got 150)"}
    ]
    shown = installed.show(MEMDOOR, "ActiveState", "MainPID", "NRestarts")
    before = myapp.right_after_enable
    assert shown == {"ActiveState": "active", "MainPID": before["MainPID"], "NRestarts": "0"}

    # The old configuration still runs: its targets keep reporting after the refusal.
    def sample_after_refusal() -> Optional[dict[str, Any]]:
        records = records_of(installed, "sockets")
        later = [r for r in records if r["timestamp"] > invalid["timestamp"]]
        return next((r for r in later if r["event"] == "sample"), None)

    poll_until(sample_after_refusal, 30, "a sample of an old target after the refusal")
    status = installed.show(MEMDOOR, "StatusText")["StatusText"]
    assert status.startswith("watching 4 targets"), status


def test_watchdog_restarts_a_wedged_memdoor(
    installed: Container, stop_afterwards: list[str]
) -> None:
    unit = "memdoor@wedged.service"
    target_unit = "wedged-target.service"
    stop_afterwards.extend([unit, target_unit])
    target_pid = int(start_as_nobody(installed, target_unit, ["/usr/bin/sleep", "infinity"]))
    installed.write_file(
        "/etc/memdoor/wedged.toml",
        f'[[target]]\nname = "wedged"\npid = {target_pid}\ninterval = 0.5\n',
    )
    # A short watchdog keeps the test quick; no core file from the SIGABRT.
    installed.write_file(
        f"/etc/systemd/system/{unit}.d/watchdog.conf",
        "[Service]\nWatchdogSec=3s\nLimitCORE=0\n",
    )
    installed.run("systemctl", "daemon-reload")
    installed.run("systemctl", "start", unit, timeout=120)
    first_pid = installed.show(unit, "MainPID")["MainPID"]
    wait_for_record(
        installed,
        ("MEMDOOR_TARGET=wedged", "MEMDOOR_EVENT=target_found"),
        lambda r: True,
        "memdoor watching the target",
    )

    # A stopped process runs no event loop: no more WATCHDOG=1.
    installed.run("kill", "-STOP", first_pid)

    def restarted() -> Optional[dict[str, str]]:
        shown = installed.show(unit, "ActiveState", "MainPID", "NRestarts")
        done = shown["ActiveState"] == "active" and shown["NRestarts"] == "1"
        return shown if done else None

    # WatchdogSec=3s, then the shipped RestartSec=5s.
    shown = poll_until(restarted, 60, f"{unit} to be killed by the watchdog and restarted")
    assert shown["MainPID"] not in ("0", first_pid)
    journal = installed.run("journalctl", "-u", unit, "-o", "cat").stdout
    assert "Watchdog timeout (limit 3s)!" in journal
    assert f"Killing process {first_pid} (memdoor) with signal SIGABRT." in journal
    assert "Failed with result 'watchdog'." in journal

    def watching_again() -> Optional[list[dict[str, Any]]]:
        records = memdoor_records(installed, f"_SYSTEMD_UNIT={unit}", f"_PID={shown['MainPID']}")
        return records if any(r["event"] == "target_found" for r in records) else None

    records = poll_until(watching_again, 30, "the restarted memdoor watching again")
    assert records[0]["event"] == "daemon_started"
    found = next(r for r in records if r["event"] == "target_found")
    assert found["pid"] == target_pid
