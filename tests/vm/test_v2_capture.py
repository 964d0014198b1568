"""The kill captured where issue 12 measured it lost, on pure cgroup v2 under systemd:
- with the kernel log taken away from the unit (capabilities cut to CAP_SYS_PTRACE and
  CAP_DAC_READ_SEARCH, as in many containers and hardened hosts), every OOM kill must
  still be `oom_killed`, told by the cgroup counter although systemd removes the unit's
  cgroup right after the kill;
- with default settings (a config naming only the target and `threshold = 90`), a
  process filling its `MemoryMax=` cgroup at full speed is reported above the threshold
  before the kill, and `oom_killed` within a second of it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

import pytest

from tests.system.memdoor_units import memdoor_records, wait_for_record
from tests.vm.machine import VirtualMachine
from tests.vm.oom_units import FLOOD, KILLS, LEAK, kernel_killed_pids, moment, oomer_unit, verdicts

pytestmark = pytest.mark.vm

LIMIT_MB = 256
THRESHOLD = 90
# What the kernel log's absence is cut to (the shipped unit adds CAP_SYSLOG).
NO_KERNEL_LOG = """\
[Service]
CapabilityBoundingSet=
CapabilityBoundingSet=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
AmbientCapabilities=
AmbientCapabilities=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH
"""


@pytest.fixture
def memdoor_instance(installed_vm: VirtualMachine) -> Iterator[list[str]]:
    """The units a test starts, stopped and forgotten afterwards, memdoor's last."""
    units: list[str] = []
    yield units
    installed_vm.stop_units(reversed(units), timeout=120)


def test_without_the_kernel_log_every_kill_is_oom_killed_by_the_cgroup_counter(
    installed_vm: VirtualMachine, memdoor_instance: list[str]
) -> None:
    vm = installed_vm
    memdoor = "memdoor@nokmsg.service"
    memdoor_instance.append(memdoor)
    vm.write_file(f"/etc/systemd/system/{memdoor}.d/no-kernel-log.conf", NO_KERNEL_LOG)
    vm.write_file(
        "/etc/memdoor/nokmsg.toml",
        f'[daemon]\nthreshold = {THRESHOLD}\nthreshold_base = "cgroup"\n\n'
        '[[target]]\nname = "hidden"\npidfile = "/run/hidden.pid"\n'
        "interval = 0.2\nmin_interval = 0.05\n",
    )
    unit = oomer_unit(vm, "hidden", LIMIT_MB, LEAK)
    memdoor_instance.append(unit)
    vm.run("systemctl", "start", memdoor, timeout=180)
    started = wait_for_record(
        vm,
        (f"_SYSTEMD_UNIT={memdoor}", "MEMDOOR_EVENT=daemon_started"),
        lambda r: True,
        "daemon_started",
    )
    assert started["evidence"]["kmsg"] != "readable", started["evidence"]

    vm.run("systemctl", "start", unit)
    try:
        found = verdicts(vm, memdoor, "hidden")
    finally:
        vm.run("systemctl", "stop", unit, timeout=120)
    killed = kernel_killed_pids(vm)
    summary = [(r["pid"], r["event"], r.get("kill", {}).get("sources")) for r in found]
    # Each process memdoor judged was in fact OOM-killed (the kernel log, read here).
    assert [r["pid"] in killed for r in found] == [True] * KILLS, (summary, killed)
    assert [r["event"] for r in found] == ["oom_killed"] * KILLS, summary
    assert [r["kill"]["sources"] for r in found] == [["cgroup_counter"]] * KILLS, summary


def test_default_settings_capture_a_cgroup_filled_at_full_speed(
    installed_vm: VirtualMachine, memdoor_instance: list[str]
) -> None:
    vm = installed_vm
    memdoor = "memdoor@defaults.service"
    memdoor_instance.append(memdoor)
    vm.write_file(
        "/etc/memdoor/defaults.toml",
        f'[[target]]\nname = "filler"\npidfile = "/run/filler.pid"\nthreshold = {THRESHOLD}\n',
    )
    unit = oomer_unit(vm, "filler", LIMIT_MB, FLOOD)
    memdoor_instance.append(unit)
    vm.run("systemctl", "start", memdoor, timeout=180)
    vm.run("systemctl", "start", unit)
    try:
        found = verdicts(vm, memdoor, "filler")
    finally:
        vm.run("systemctl", "stop", unit, timeout=120)
    killed = kernel_killed_pids(vm)
    records = memdoor_records(vm, f"_SYSTEMD_UNIT={memdoor}", "MEMDOOR_TARGET=filler")
    summary = [(r["pid"], r["event"], r["timestamp"], r.get("kill")) for r in found]
    assert [r["pid"] in killed for r in found] == [True] * KILLS, (summary, killed)
    assert [r["event"] for r in found] == ["oom_killed"] * KILLS, summary
    late = []
    uncaptured = []
    for verdict in found:
        killed_at = moment(verdict["kill"]["killed_at"])
        if moment(verdict["timestamp"]) - killed_at > datetime.timedelta(seconds=1):
            late.append((verdict["pid"], verdict["timestamp"], verdict["kill"]["killed_at"]))
        crossed = [
            r
            for r in records
            if r["pid"] == verdict["pid"]
            and r["event"] == "threshold_crossed"
            and moment(r["taken_at"]) < killed_at
        ]
        if not crossed:
            uncaptured.append(verdict["pid"])
    # Both over all kills at once, so a failure says how many were missed.
    events = [(r["event"], r["pid"], r["timestamp"]) for r in records]
    assert (uncaptured, late) == ([], []), (
        f"no threshold_crossed before the kill of {uncaptured}; oom_killed more than 1 s "
        f"after the kill (pid, record, kill): {late}; records: {events}"
    )
