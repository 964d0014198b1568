"""Which kill report belongs to which process, as KernelLog decides it.

Reports are filed the way drain() files parsed /dev/kmsg lines. Outside the
initial pid namespace (memdoor in a container) the kernel's pid is not ours
and a kill is matched by name and cgroup, which needs the extra rules here.
"""

from __future__ import annotations

import time

from memdoor.oom.kernel_log import KernelLog
from memdoor.procfs.kmsg import OomKillReport

CGROUP = "/system.slice/app.service"
STARTED = 1_000_000


def kill(kernel_pid: int, name: str = "worker", at: int = 5_000_000) -> OomKillReport:
    return OomKillReport(
        pid=kernel_pid,
        name=name,
        evidence=("killed", "constraint"),
        usec_since_boot=at,
        cgroup_kill=True,
        constraint="CONSTRAINT_MEMCG",
        task_memcg=f"/machine.slice/container{CGROUP}",
    )


def log_in_a_container() -> KernelLog:
    log = KernelLog("/nonexistent/kmsg")
    log.pids_are_ours = False
    return log


def test_in_the_initial_namespace_the_pid_decides() -> None:
    log = KernelLog("/nonexistent/kmsg")
    log.pids_are_ours = True
    log.keep(kill(4242), time.monotonic())
    assert log.kill_of(4242, STARTED, "worker", CGROUP) == kill(4242)
    assert log.kill_of(4243, STARTED, "worker", CGROUP) is None
    # A kill from before the process started was of an earlier owner of the pid.
    assert log.kill_of(4242, 6_000_000, "worker", CGROUP) is None


def test_in_a_container_name_and_cgroup_decide_and_a_kill_is_given_once() -> None:
    log = log_in_a_container()
    log.keep(kill(90001), time.monotonic())
    assert log.kill_of(17, STARTED, "other", CGROUP) is None
    assert log.kill_of(17, STARTED, "worker", "/system.slice/db.service") is None
    assert log.kill_of(17, STARTED, "worker", CGROUP) == kill(90001)
    assert log.kill_of(18, STARTED, "worker", CGROUP) is None


def test_a_kill_read_before_the_process_was_last_seen_alive_is_not_its_own() -> None:
    """Two same-named processes in one cgroup: the sibling is OOM-killed, this one is
    seen alive afterwards and exits normally later. The sibling's kill stays its own."""
    log = log_in_a_container()
    log.keep(kill(90001), time.monotonic())
    seen_alive = log.serial
    assert log.kill_of(17, STARTED, "worker", CGROUP, alive_after=seen_alive) is None
    # A kill read after that serial can be this process's.
    log.keep(kill(90002, at=7_000_000), time.monotonic())
    assert log.kill_of(17, STARTED, "worker", CGROUP, alive_after=seen_alive) == kill(
        90002, at=7_000_000
    )


def test_the_later_line_of_a_merged_report_sets_its_place() -> None:
    """The constraint line comes before SIGKILL is sent, the Killed line after: a process
    seen alive between them may still be the victim."""
    log = log_in_a_container()
    constraint_only = OomKillReport(
        pid=90001,
        name="worker",
        evidence=("constraint",),
        usec_since_boot=5_000_000,
        constraint="CONSTRAINT_MEMCG",
        task_memcg=f"/machine.slice/container{CGROUP}",
    )
    log.keep(constraint_only, time.monotonic())
    seen_alive = log.serial
    log.keep(kill(90001), time.monotonic())
    found = log.kill_of(17, STARTED, "worker", CGROUP, alive_after=seen_alive)
    assert found is not None and found.killed and found.constraint == "CONSTRAINT_MEMCG"
