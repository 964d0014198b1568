"""memdoor end to end under a real systemd and a real journald, as shipped, on cgroup v1.

One container and one installation for the module, memdoor@myapp enabled as
tests/system/scenarios.py describes, with `myapp` for its first target: every
/usr/bin/perl process. `hog.service` (perl, MemoryMax=256M) starts only once memdoor is
watching and allocates until the kernel OOM-kills it. The scenarios shared with the
cgroup v2 VM run here through thin tests; what is v1's own (a kill told by the kernel log
alone, matched by name and cgroup from the container's pid namespace) is tested here.
A config error at start is tested in test_memdoor_service.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import pytest

from tests.record_schema import validate_record
from tests.system import scenarios
from tests.system.container import Container, poll_until
from tests.system.memdoor_units import HELPERS, memdoor_records, wait_for_record

pytestmark = pytest.mark.system

PACE = scenarios.Pace(start=120, command=60, record=60, watchdog_s=3)
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
MAPPINGS = 20_000
THRESHOLD = 50
MYAPP = scenarios.MyappConfig(
    threshold=THRESHOLD,
    first_target="""\
[[target]]
name = "myapp"
exe = "/usr/bin/perl"
interval = 0.2
min_interval = 0.05
""",
    bigmaps_interval=5.0,
)


@pytest.fixture(scope="module")
def myapp(installed: Container) -> Iterator[scenarios.Started]:
    installed.write_file(
        f"/etc/systemd/system/{HOG_UNIT}",
        f"[Service]\nUser=nobody\nMemoryMax={HOG_LIMIT_MB}M\n"
        f"ExecStart=/usr/bin/perl {HOG_SCRIPT}\n",
    )
    installed.run("systemctl", "daemon-reload")
    with scenarios.enabled_myapp(installed, MYAPP, MAPPINGS, HOG_UNIT, PACE) as started:
        yield started


def test_enable_now_returns_once_memdoor_is_ready(
    installed: Container, myapp: scenarios.Started
) -> None:
    scenarios.enable_now_returns_once_ready(installed, myapp, PACE)


# Not a shared scenario: on cgroup v1 the unit's cgroup (and its OOM counter) is gone by
# memdoor's next tick and only the kernel log tells the kill; the VM's v2 test expects
# the cgroup's memory.events among the sources and kills its unit again and again.
def test_oom_kill_of_a_unit_is_reported_with_the_last_snapshot(
    installed: Container, myapp: scenarios.Started
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

    mine = [r for r in memdoor_records(installed, "MEMDOOR_TARGET=myapp") if r["pid"] == hog_pid]
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
    installed: Container, myapp: scenarios.Started
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
    installed: Container, myapp: scenarios.Started
) -> None:
    scenarios.every_record_reaches_the_journal_whole(installed, MAPPINGS, PACE)


def test_memdoor_reads_another_users_process_from_its_sandbox(
    installed: Container, myapp: scenarios.Started
) -> None:
    scenarios.another_users_process_is_read_from_the_sandbox(installed, myapp, PACE)


def test_reload_applies_a_new_target_and_keeps_running_on_a_broken_file(
    installed: Container, myapp: scenarios.Started, stop_afterwards: list[str]
) -> None:
    scenarios.reload_good_then_broken(installed, myapp, stop_afterwards, PACE)


def test_watchdog_restarts_a_wedged_memdoor(
    installed: Container, stop_afterwards: list[str]
) -> None:
    scenarios.watchdog_restarts_a_wedged_memdoor(installed, stop_afterwards, PACE)
