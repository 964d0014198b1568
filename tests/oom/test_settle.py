"""A verdict waits, boundedly, for the evidence that follows a kill; a stop never costs
the record; the victims of one memory.oom.group kill make one oom_group_killed record.

The kernel's lines are fed through a KmsgReader whose reads return them (a user
cannot write kernel-facility lines to /dev/kmsg); the processes are real, so
the witness matches the lines to them by pid and start time as on a host.
tests/vm/test_v2_oomd.py makes a real group kill.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any, Optional

import pytest

from memdoor.collect.identity import ProcessIdentity, read_identity, read_stat
from memdoor.collect.liveness import Liveness, Verdict
from memdoor.emitter import DaemonRecords
from memdoor.oom.counters import CounterRise
from memdoor.oom.group import GatheredGroupKill, GroupKills, GroupVictim
from memdoor.oom.kernel_log import GroupKill, KernelLog
from memdoor.oom.kill import Kill
from memdoor.oom.kmsg_reader import KmsgReader
from memdoor.oom.nearby import NeighbourKillCounter
from memdoor.oom.witness import SETTLE_SECONDS, KillWitness
from memdoor.procfs.kmsg import KmsgRecord, parse_kmsg_record
from memdoor.records import RecordLog
from memdoor.vocabulary import monotonic_usec
from memdoor.watcher import ProcessWatcher
from tests.record_schema import validate_record
from tests.test_watcher import LineCollector, make_state

CGROUP = "/system.slice/grouped.service"


class FedReader(KmsgReader):
    """Reads return the lines fed so far, as /dev/kmsg hands out what arrived."""

    def __init__(self) -> None:
        super().__init__(os.open(os.devnull, os.O_RDONLY), "fed")
        self.fed: list[KmsgRecord] = []

    def feed(self, line: str) -> None:
        self.fed.append(parse_kmsg_record(line + "\n"))

    def read_available(self) -> list[KmsgRecord]:
        records, self.fed = self.fed, []
        return records


class RisenCounter:
    """The cgroup's OOM counter as a kill left it: 0 while alive, 1 at the exit."""

    def at_exit(self) -> CounterRise:
        return CounterRise(0, 1, f"/sys/fs/cgroup{CGROUP}/memory.events")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def sleeper(processes: list[subprocess.Popen[bytes]]) -> ProcessIdentity:
    process = subprocess.Popen(["sleep", "600"])
    processes.append(process)
    stat = read_stat(process.pid)
    assert not hasattr(stat, "reason"), stat
    return read_identity(process.pid, stat, [])  # type: ignore[arg-type]


def killed_line(sequence: int, pid: int) -> str:
    return (
        f"3,{sequence},{monotonic_usec()},-;Memory cgroup out of memory: Killed process {pid} "
        "(sleep) total-vm:5000kB, anon-rss:100kB, file-rss:1000kB, shmem-rss:0kB, UID:0 "
        "pgtables:40kB oom_score_adj:0"
    )


def announcement(sequence: int) -> str:
    return (
        f"6,{sequence},{monotonic_usec()},-;Tasks in {CGROUP} are going to be killed due to "
        "memory.oom.group set"
    )


def kernel_log_fed() -> tuple[KernelLog, FedReader]:
    log = KernelLog()
    log.pids_are_ours = True
    reader = FedReader()
    log.reader = reader
    return log, reader


def witness_of(identity: ProcessIdentity, log: KernelLog) -> KillWitness:
    return KillWitness(identity, log, NeighbourKillCounter())


def verdict_after_late_line(
    witness: KillWitness, reader: FedReader, delay: float, line: str
) -> Optional[Kill]:
    """The witness's verdict on its process gone, the kernel's line coming delay
    seconds later while the verdict waits (settle)."""

    async def scenario() -> Optional[Kill]:
        witness.gone()
        asyncio.get_running_loop().call_later(delay, reader.feed, line)
        await witness.settle()
        return witness.verdict()

    return asyncio.run(scenario())


def test_a_verdict_waits_for_the_rest_of_its_group_kill(processes) -> None:
    first, second = sleeper(processes), sleeper(processes)
    log, reader = kernel_log_fed()
    witness = witness_of(first, log)
    reader.feed(killed_line(1, first.pid))
    reader.feed(announcement(2))
    # The next member's line comes while the verdict waits.
    kill = verdict_after_late_line(witness, reader, 0.15, killed_line(3, second.pid))
    assert kill is not None and kill.group is not None
    assert kill.group.pids == [first.pid, second.pid]
    assert kill.fields(first.pid)["group_pids"] == [first.pid, second.pid]


def test_a_kill_the_counter_told_of_first_gets_the_kernels_line(processes) -> None:
    """The kernel sends SIGKILL before it logs the kill: a small victim can be gone first."""
    victim = sleeper(processes)
    log, reader = kernel_log_fed()
    witness = witness_of(victim, log)
    witness.counters = RisenCounter()  # type: ignore[assignment]
    kill = verdict_after_late_line(witness, reader, 0.2, killed_line(1, victim.pid))
    assert kill is not None
    assert kill.sources == ["kmsg", "cgroup_counter"]


def test_the_wait_for_a_line_that_never_comes_is_bounded(processes) -> None:
    victim = sleeper(processes)
    log, _reader = kernel_log_fed()
    witness = witness_of(victim, log)
    witness.counters = RisenCounter()  # type: ignore[assignment]
    started = time.monotonic()
    witness.gone()
    asyncio.run(witness.settle())
    waited = time.monotonic() - started
    kill = witness.verdict()
    assert kill is not None and kill.sources == ["cgroup_counter"]
    assert SETTLE_SECONDS <= waited < SETTLE_SECONDS + 5


def test_without_the_kernel_log_nothing_is_waited_for(processes) -> None:
    victim = sleeper(processes)
    log = KernelLog()  # never started: no reader
    witness = witness_of(victim, log)
    witness.counters = RisenCounter()  # type: ignore[assignment]
    witness.gone()
    started = time.monotonic()
    asyncio.run(witness.settle())
    assert time.monotonic() - started < SETTLE_SECONDS


def written(collector: LineCollector) -> list[dict[str, Any]]:
    return [json.loads(line) for line in collector.lines]


def test_a_stop_during_the_wait_still_writes_the_kill(processes) -> None:
    victim = sleeper(processes)
    state = make_state(victim.pid)
    log, _reader = kernel_log_fed()
    state.services.kernel_log = log
    collector = LineCollector()
    state.records.writer = RecordLog(collector)
    watcher = ProcessWatcher(state, victim)
    watcher.witness.counters = RisenCounter()  # type: ignore[assignment]

    async def scenario() -> None:
        task = asyncio.ensure_future(watcher._ended(Liveness(Verdict.EXITED, None, "gone")))
        await asyncio.sleep(0.3)
        assert not task.done()  # waiting for the kernel's line
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    [record] = written(collector)
    assert record["event"] == "oom_killed"
    assert record["kill"]["sources"] == ["cgroup_counter"]


def test_the_victims_of_one_group_kill_make_one_record() -> None:
    group = GroupKill(CGROUP, monotonic_usec(), [811, 812, 813])
    other = GroupKill("/kubepods.slice/pod", monotonic_usec(), [900])
    gathered: list[GatheredGroupKill] = []

    async def scenario() -> None:
        kills = GroupKills(gather_seconds=0.2)
        kills.emit = gathered.append
        kills.victim(group, GroupVictim("app", 811, "perl"))
        await asyncio.sleep(0.1)
        kills.victim(group, GroupVictim("app", 812, "perl"))
        kills.victim(other, GroupVictim("db", 900, "postgres"))
        await asyncio.sleep(0.5)
        assert len(gathered) == 2
        kills.victim(group, GroupVictim("late", 813, "sleep"))
        kills.flush()  # the daemon stops: nothing gathered is lost

    asyncio.run(scenario())
    assert [[v.pid for v in g.victims] for g in gathered] == [[811, 812], [900], [813]]
    assert gathered[0].group is group


def test_the_group_record_lists_every_process_and_stays_bounded() -> None:
    collector = LineCollector()
    records = DaemonRecords(RecordLog(collector))
    many = GroupKill("/kubepods.slice/kubepods-pod1.slice/cri-containerd-ab.scope", 1, [])
    many.pids.extend(range(100, 3100))
    records.oom_group_killed(
        GatheredGroupKill(many, [GroupVictim("web", 100, "nginx"), GroupVictim("web", 101, "n")])
    )
    small = GroupKill(CGROUP, monotonic_usec(), [811, 812, 813])
    records.oom_group_killed(GatheredGroupKill(small, [GroupVictim("app\x1b[2J", 812, "perl")]))
    big, one = written(collector)
    for record in (big, one):
        validate_record(record)
        assert record["event"] == "oom_group_killed"
    assert big["group"]["killed"] == 3000
    assert len(big["group"]["pids"]) == 256 and len(big["group"]["unwatched_pids"]) == 256
    assert big["group"]["unwatched_pids"][0] == 102
    assert one["group"]["pids"] == [811, 812, 813]
    assert one["group"]["unwatched_pids"] == [811, 813]
    assert one["group"]["watched"] == [{"target": "app\x1b[2J", "pid": 812, "name": "perl"}]
    assert "3 process(es) together, 1 watched" in one["message"]
    assert one["owner"]["unit"] == "grouped.service"


class CgroupOf:
    """The witness's view of the process's cgroup: only its path matters here."""

    path = CGROUP


def test_a_victim_whose_line_never_came_is_placed_in_its_cgroups_group_kill(processes) -> None:
    first, second = sleeper(processes), sleeper(processes)
    log, reader = kernel_log_fed()
    reader.feed(killed_line(1, first.pid))
    reader.feed(announcement(2))
    witness = witness_of(second, log)
    witness.counters = RisenCounter()  # type: ignore[assignment]
    witness.cgroup = CgroupOf()  # type: ignore[assignment]
    witness.gone()
    asyncio.run(witness.settle())
    kill = witness.verdict()
    assert kill is not None and kill.report is None
    assert kill.group is not None and kill.group.cgroup == CGROUP
    assert kill.group.pids == [first.pid]
    elsewhere = witness_of(second, log)
    elsewhere.counters = RisenCounter()  # type: ignore[assignment]
    elsewhere.cgroup = type("Other", (), {"path": "/system.slice/other.service"})()  # type: ignore[assignment]
    elsewhere.gone()
    kill = elsewhere.verdict()
    assert kill is not None and kill.group is None


def test_the_group_record_waits_while_the_groups_lines_keep_coming() -> None:
    group = GroupKill(CGROUP, monotonic_usec(), [811])
    gathered: list[GatheredGroupKill] = []

    async def scenario() -> list[int]:
        kills = GroupKills(gather_seconds=0.3)
        kills.emit = gathered.append
        kills.victim(group, GroupVictim("app", 811, "perl"))
        seen = []
        for pid in (812, 813):  # a line of the group every 0.2 s
            await asyncio.sleep(0.2)
            group.pids.append(pid)
            group.newest_read = time.monotonic()
            seen.append(len(gathered))
        await asyncio.sleep(0.5)
        return seen

    assert asyncio.run(scenario()) == [0, 0]
    [record] = gathered
    assert record.group.pids == [811, 812, 813]
