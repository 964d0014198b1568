"""A memory.oom.group kill in the kernel log: every victim joined to the one group.

The lines are in the order and form of mm/oom_kill.c (Linux 6.1) for a unit with
memory.oom.group = 1 holding three processes: the chosen victim, then "Tasks in …
are going to be killed due to memory.oom.group set", then one "Killed process"
line for each other task of the group. tests/vm/test_v2_oomd.py makes a real one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from memdoor.oom.kernel_log import KernelLog, parse_group_kill
from memdoor.oom.kill import Kill
from memdoor.procfs.kmsg import parse_kmsg_record, parse_oom_kill

LINES = [
    "6,1201,90000100,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
    "mems_allowed=0,oom_memcg=/system.slice/grouped.service,"
    "task_memcg=/system.slice/grouped.service,task=perl,pid=811,uid=65534",
    "3,1202,90000150,-;Memory cgroup out of memory: Killed process 811 (perl) "
    "total-vm:120000kB, anon-rss:100000kB, file-rss:4000kB, shmem-rss:0kB, UID:65534 "
    "pgtables:300kB oom_score_adj:0",
    "6,1203,90000180,-;Tasks in /system.slice/grouped.service are going to be killed due to "
    "memory.oom.group set",
    "3,1204,90000200,-;Memory cgroup out of memory: Killed process 812 (perl) "
    "total-vm:60000kB, anon-rss:50000kB, file-rss:4000kB, shmem-rss:0kB, UID:65534 "
    "pgtables:200kB oom_score_adj:0",
    "3,1205,90000220,-;Memory cgroup out of memory: Killed process 813 (sleep) "
    "total-vm:5000kB, anon-rss:100kB, file-rss:1000kB, shmem-rss:0kB, UID:65534 "
    "pgtables:40kB oom_score_adj:0",
    # A later, ordinary kill elsewhere is no part of the group: its OOM event begins
    # with its own header (the kernel prints it unless its rate limit holds it back).
    "4,1206,94999000,-;java invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, "
    "oom_score_adj=0",
    "3,1207,95000000,-;Memory cgroup out of memory: Killed process 900 (java) "
    "total-vm:5000kB, anon-rss:100kB, file-rss:1000kB, shmem-rss:0kB, UID:0 "
    "pgtables:40kB oom_score_adj:0",
]


def read_lines(log: KernelLog, lines: Sequence[str] = LINES) -> None:
    """Each line as KernelLog.drain hands it on: a kill report kept, any other line
    to group_announced."""
    for line in lines:
        record = parse_kmsg_record(line + "\n")
        report = parse_oom_kill(record)
        if report is not None:
            log.keep(report, time.monotonic())
        else:
            log.group_announced(record)


def test_every_victim_of_a_group_kill_lists_the_group() -> None:
    log = KernelLog()
    read_lines(log)
    for pid in (811, 812, 813):
        group = log.groups[pid]
        assert group.cgroup == "/system.slice/grouped.service"
        assert group.pids == [811, 812, 813]
    assert 900 not in log.groups
    section = Kill(log.reports[812].report, group=log.groups[812]).fields(812)
    assert section["group_pids"] == [811, 812, 813]
    assert section["group_cgroup"] == "/system.slice/grouped.service"
    assert section["killer"] == "kernel"


def test_an_injected_announcement_is_not_the_kernels() -> None:
    """A user's write to /dev/kmsg gets facility 1 (LOG_USER)."""
    record = parse_kmsg_record(
        "14,1300,1,-;Tasks in /x are going to be killed due to memory.oom.group set\n"
    )
    assert parse_group_kill(record) is None


def test_a_victims_line_seconds_after_the_announcement_still_joins() -> None:
    """The kernel prints each victim's line after the console took every line before it:
    on an emulated or IPMI serial console that is seconds later."""
    log = KernelLog()
    read_lines(log, LINES[:3])
    late = parse_oom_kill(
        parse_kmsg_record(
            "3,1204,94000200,-;Memory cgroup out of memory: Killed process 812 (perl) "
            "total-vm:60000kB, anon-rss:50000kB, file-rss:4000kB, shmem-rss:0kB, UID:65534 "
            "pgtables:200kB oom_score_adj:0\n"
        )
    )
    assert late is not None
    log.keep(late, time.monotonic())
    assert log.groups[812].pids == [811, 812]


def test_another_oom_events_victim_ends_the_group() -> None:
    """A kill whose constraint line names a cgroup outside the group is another event's."""
    log = KernelLog()
    read_lines(log)
    read_lines(
        log,
        [
            "6,1207,90000300,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
            "mems_allowed=0,oom_memcg=/system.slice/other.service,"
            "task_memcg=/system.slice/other.service,task=java,pid=950,uid=0",
            "3,1208,90000350,-;Memory cgroup out of memory: Killed process 950 (java) "
            "total-vm:5000kB, anon-rss:100kB, file-rss:1000kB, shmem-rss:0kB, UID:0 "
            "pgtables:40kB oom_score_adj:0",
            "3,1209,90000400,-;Memory cgroup out of memory: Killed process 951 (java) "
            "total-vm:5000kB, anon-rss:100kB, file-rss:1000kB, shmem-rss:0kB, UID:0 "
            "pgtables:40kB oom_score_adj:0",
        ],
    )
    assert {950, 951} <= set(log.reports)  # read as kills, not left out of the group unread
    assert log.groups[811].pids == [811, 812, 813]
    assert 950 not in log.groups and 951 not in log.groups


def test_a_member_dying_already_when_the_killer_came_is_listed() -> None:
    """systemd's OOMPolicy=kill can stop the unit while the kernel is still writing the
    first victim's report to a slow console: the kernel then skips the dying member."""
    log = KernelLog()
    read_lines(
        log,
        [
            *LINES[:3],
            "6,1204,91500000,-;Memory cgroup out of memory: OOM victim 812 (perl) is already "
            "exiting. Skip",
            "14,1205,91600000,-;Memory cgroup out of memory: OOM victim 999 (x) is already "
            "exiting. Skip",
        ],
    )
    assert log.groups[811].pids == [811, 812]
