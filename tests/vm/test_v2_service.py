"""memdoor@myapp as shipped, on systemd 252 with pure cgroup v2: the users' platform.

One instance for the module, enabled with `systemctl enable --now` as
tests/system/scenarios.py describes, under the config users are told to write for a
service (cgroup base). Its first target, `oomer`, is the process behind /run/oomer.pid,
in a `MemoryMax=` unit the kernel OOM-kills three times (systemd restarts it and rewrites
the pidfile each time). The scenarios shared with the cgroup v1 container run here
through thin tests, with the time an emulated CPU needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.record_schema import validate_record
from tests.system import scenarios
from tests.system.memdoor_units import memdoor_records
from tests.vm.machine import VirtualMachine
from tests.vm.oom_units import KILLS, LEAK, kernel_killed_pids, moment, oomer_unit, verdicts

pytestmark = pytest.mark.vm

PACE = scenarios.Pace(start=180, command=120, record=120, watchdog_s=5)
OOMER = "oomer"
OOMER_LIMIT_MB = 256
THRESHOLD = 90
MAPPINGS = 10_000
MYAPP = scenarios.MyappConfig(
    threshold=THRESHOLD,
    first_target=f"""\
[[target]]
name = "{OOMER}"
pidfile = "/run/{OOMER}.pid"
interval = 0.2
min_interval = 0.05
""",
    bigmaps_interval=30.0,
)


@pytest.fixture(scope="module")
def myapp(installed_vm: VirtualMachine) -> Iterator[scenarios.Started]:
    with scenarios.enabled_myapp(
        installed_vm, MYAPP, MAPPINGS, f"{OOMER}.service", PACE
    ) as started:
        yield started


def test_enable_now_on_cgroup_v2(installed_vm: VirtualMachine, myapp: scenarios.Started) -> None:
    vm = installed_vm
    assert vm.run("stat", "-fc", "%T", "/sys/fs/cgroup").stdout.strip() == "cgroup2fs"
    assert vm.run("readlink", "/proc/1/exe").stdout.strip() == "/usr/lib/systemd/systemd"
    scenarios.enable_now_returns_once_ready(vm, myapp, PACE)


# Not a shared scenario: on cgroup v2 the cgroup's memory.events tells every kill along
# with the kernel log, and the kernel's pid is memdoor's (no pid namespace between them);
# the container's v1 test has the kernel log alone and matches by name and cgroup.
def test_a_unit_oom_killed_again_and_again_is_reported_every_time(
    installed_vm: VirtualMachine, myapp: scenarios.Started
) -> None:
    """Every kill crossed before it happened and reported as oom_killed with the cgroup
    counter among the sources, although systemd removes the unit's cgroup (and its
    memory.events) right after each kill."""
    vm = installed_vm
    unit = oomer_unit(vm, OOMER, OOMER_LIMIT_MB, LEAK)
    vm.run("systemctl", "start", unit)
    try:
        found = verdicts(vm, scenarios.MEMDOOR, OOMER)
    finally:
        vm.run("systemctl", "stop", unit, timeout=120)
    killed = kernel_killed_pids(vm)
    records = memdoor_records(vm, f"_SYSTEMD_UNIT={scenarios.MEMDOOR}", f"MEMDOOR_TARGET={OOMER}")
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
    installed_vm: VirtualMachine, myapp: scenarios.Started
) -> None:
    scenarios.every_record_reaches_the_journal_whole(installed_vm, MAPPINGS, PACE)


def test_another_users_process_is_read_under_the_hardened_unit(
    installed_vm: VirtualMachine, myapp: scenarios.Started
) -> None:
    scenarios.another_users_process_is_read_from_the_sandbox(installed_vm, myapp, PACE)


def test_reload_applies_a_good_file_and_keeps_the_old_config_on_a_broken_one(
    installed_vm: VirtualMachine, myapp: scenarios.Started, stop_afterwards: list[str]
) -> None:
    scenarios.reload_good_then_broken(installed_vm, myapp, stop_afterwards, PACE)


def test_watchdog_restarts_a_wedged_memdoor(
    installed_vm: VirtualMachine, stop_afterwards: list[str]
) -> None:
    scenarios.watchdog_restarts_a_wedged_memdoor(installed_vm, stop_afterwards, PACE)
