"""take_snapshot on the recorded /proc trees, and on real processes checked against the kernel."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union

import pytest

from memdoor.collect.cgroup import find_cgroup_mounts, memory_cgroup_of
from memdoor.collect.identity import read_stat
from memdoor.collect.reading import Unreadable
from memdoor.collect.tree import Ancestor
from memdoor.lab.workload_parent import Workload
from memdoor.procfs.stat import ProcStat
from memdoor.render.snapshot_dict import snapshot_dict
from memdoor.snapshot import Snapshot, take_snapshot
from memdoor.vocabulary import ALL_SECTIONS as SECTIONS
from tests.collect.trees import (
    COMPLETE,
    MALFORMED_STATUS,
    MISSING,
    MODERN,
    OLD_KERNEL,
    PARENT,
    TRUNCATED_SMAPS,
    deny,
)
from tests.collect.zombie import killed_while_large, zombie
from tests.ss import kernel_state, needs_ss, ss_connections
from tests.workload_fixture import SpawnWorkload

MIB_KB = 1024
FIXTURE_SOCKETS = 12
little_endian = pytest.mark.skipif(
    sys.byteorder != "little", reason="the trees were recorded on a little-endian host"
)


def comparable(snapshot: Snapshot) -> dict[str, Any]:
    """The snapshot as its record, without the one field that differs between two takes."""
    data = snapshot_dict(snapshot)
    del data["taken_at"]
    return data


def problems_of(snapshot: Snapshot) -> list[tuple[str, str]]:
    return [(p.what, p.reason) for p in snapshot.problems]


def kb_field(path: str, field: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in {path}")


@pytest.fixture
def copied_tree(tmp_path: Path) -> Path:
    for name in ("meminfo", "stat"):
        shutil.copy(f"{MODERN}/{name}", tmp_path / name)
    for pid in (1, PARENT, COMPLETE):
        shutil.copytree(f"{MODERN}/{pid}", tmp_path / str(pid), symlinks=True)
    return tmp_path


# --- the recorded trees ------------------------------------------------------


@little_endian
def test_complete_process() -> None:
    snapshot = take_snapshot(COMPLETE, proc=MODERN)
    assert snapshot.problems == []
    assert not snapshot.gone
    assert snapshot.identity is not None
    assert (snapshot.identity.name, snapshot.identity.exe) == ("sleep", "/usr/bin/sleep")
    memory = snapshot.memory
    assert memory is not None
    # The totals come from smaps_rollup even though smaps was read for the
    # mappings (its own sums, 299 kB PSS, differ: the files were read apart).
    assert (memory.rss_kb, memory.pss_kb, memory.uss_kb) == (1504, 301, 132)
    assert (memory.rss_anon_kb, memory.page_tables_kb) == (96, 44)
    assert memory.rollup_source == "smaps_rollup"
    assert snapshot.oom is not None and (snapshot.oom.score, snapshot.oom.score_adj) == (866, 300)
    assert snapshot.tree == [Ancestor(PARENT, "python"), Ancestor(1, "systemd")]
    assert snapshot.mappings is not None and len(snapshot.mappings) == 24
    assert all(m.rss_kb is not None for m in snapshot.mappings)
    assert snapshot.connections is not None and len(snapshot.connections) == FIXTURE_SOCKETS


def test_memory_alone_reads_smaps_rollup() -> None:
    snapshot = take_snapshot(COMPLETE, sections=("memory",), proc=MODERN)
    assert snapshot.problems == []
    assert snapshot.memory is not None
    assert (snapshot.memory.pss_kb, snapshot.memory.rollup_source) == (301, "smaps_rollup")
    assert (snapshot.mappings, snapshot.connections, snapshot.tree, snapshot.oom) == (
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize("sections", [SECTIONS, ("memory",)])
def test_old_kernel(sections: tuple[str, ...]) -> None:
    snapshot = take_snapshot(COMPLETE, sections=sections, proc=OLD_KERNEL)
    # No smaps_rollup, no RssAnon, no MemAvailable, no tcp6: none of it is a
    # problem on such a kernel.
    assert snapshot.problems == []
    memory = snapshot.memory
    assert memory is not None
    assert (memory.rss_kb, memory.rss_anon_kb, memory.pss_kb) == (1504, None, 299)
    assert memory.mem_available_kb is None
    # Either way the totals are summed from smaps.
    assert memory.rollup_source == "smaps"


def test_truncated_smaps() -> None:
    snapshot = take_snapshot(TRUNCATED_SMAPS, proc=MODERN)
    assert problems_of(snapshot) == [(f"{MODERN}/{TRUNCATED_SMAPS}/smaps", "malformed")]
    assert not snapshot.gone
    # Mappings come from maps without resident sizes; the totals from smaps_rollup.
    assert snapshot.mappings is not None and len(snapshot.mappings) == 24
    assert all(m.rss_kb is None for m in snapshot.mappings)
    assert snapshot.memory is not None
    assert (snapshot.memory.pss_kb, snapshot.memory.rollup_source) == (301, "smaps_rollup")


def test_malformed_status() -> None:
    snapshot = take_snapshot(MALFORMED_STATUS, proc=MODERN)
    assert problems_of(snapshot) == [(f"{MODERN}/{MALFORMED_STATUS}/status", "malformed")]
    memory = snapshot.memory
    assert memory is not None
    assert (memory.rss_kb, memory.rss_anon_kb, memory.page_tables_kb) == (None, None, None)
    assert memory.pss_kb == 301
    assert snapshot.mappings is not None and snapshot.oom is not None


@pytest.mark.parametrize(
    ("denied", "sections", "changed"),
    [
        ("{pid}/status", SECTIONS, {"memory"}),
        # smaps feeds the mappings' resident sizes; maps stands in without them,
        # and mappings_source says so.
        ("{pid}/smaps", SECTIONS, {"mappings", "mappings_source"}),
        ("{pid}/smaps_rollup", ("memory",), {"memory"}),
        ("{pid}/oom_score", SECTIONS, {"oom"}),
        ("{pid}/exe", SECTIONS, {"process"}),
        ("{pid}/cmdline", SECTIONS, {"process"}),
        ("{pid}/fd", SECTIONS, {"connections"}),
        ("{pid}/net/tcp6", SECTIONS, {"connections"}),
        ("meminfo", SECTIONS, {"memory"}),
        (f"{PARENT}/stat", SECTIONS, {"tree"}),
    ],
)
def test_a_denied_file_is_listed_and_the_rest_kept(
    monkeypatch: pytest.MonkeyPatch,
    denied: str,
    sections: tuple[str, ...],
    changed: set[str],
) -> None:
    complete = comparable(take_snapshot(COMPLETE, sections=sections, proc=MODERN))
    path = f"{MODERN}/{denied.format(pid=COMPLETE)}"
    deny(monkeypatch, path)
    snapshot = take_snapshot(COMPLETE, sections=sections, proc=MODERN)
    assert problems_of(snapshot) == [(path, "denied")]
    assert not snapshot.gone
    partial = comparable(snapshot)
    # A section that could not be read at all is left out of the record.
    assert partial.keys() <= complete.keys()
    for key in complete.keys() - {"problems"}:
        if key in changed:
            assert partial.get(key) != complete[key], key
        else:
            assert partial[key] == complete[key], key


def test_a_denied_meminfo_keeps_the_process_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    complete = take_snapshot(COMPLETE, proc=MODERN).memory
    deny(monkeypatch, f"{MODERN}/meminfo")
    memory = take_snapshot(COMPLETE, proc=MODERN).memory
    assert complete is not None and complete.mem_total_kb and complete.usage_percent
    assert memory is not None
    assert (memory.mem_total_kb, memory.mem_available_kb, memory.usage_percent) == (
        None,
        None,
        None,
    )
    assert (memory.rss_kb, memory.pss_kb, memory.uss_kb) == (
        complete.rss_kb,
        complete.pss_kb,
        complete.uss_kb,
    )


def test_vanished_process() -> None:
    snapshot = take_snapshot(MISSING, proc=MODERN)
    assert problems_of(snapshot) == [(f"{MODERN}/{MISSING}/stat", "vanished")]
    assert snapshot.gone
    assert comparable(snapshot) == {
        "problems": [
            {
                "what": f"{MODERN}/{MISSING}/stat",
                "reason": "vanished",
                "detail": "No such file or directory",
            }
        ]
    }


def test_pid_reused_before_the_snapshot() -> None:
    snapshot = take_snapshot(COMPLETE, expected_start_ticks=1000, proc=MODERN)
    assert problems_of(snapshot) == [(f"{MODERN}/{COMPLETE}/stat", "reused")]
    assert snapshot.gone
    assert snapshot.identity is None and snapshot.memory is None


def test_pid_reused_during_the_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything read may describe the newcomer, so all of it is dropped."""
    reads: list[ProcStat] = []

    def read_stat_then_another(pid: int, proc: str = "/proc") -> Union[ProcStat, Unreadable]:
        stat = read_stat(pid, proc)
        assert isinstance(stat, ProcStat)
        if reads:
            stat = dataclasses.replace(stat, comm="newcomer", start_ticks=stat.start_ticks + 500)
        reads.append(stat)
        return stat

    monkeypatch.setattr("memdoor.snapshot.read_stat", read_stat_then_another)
    snapshot = take_snapshot(COMPLETE, proc=MODERN)
    assert len(reads) == 2
    assert problems_of(snapshot) == [(f"{MODERN}/{COMPLETE}/stat", "reused")]
    assert snapshot.gone
    assert comparable(snapshot).keys() == {"problems"}


def test_exited_during_the_snapshot_keeps_what_was_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[object] = []

    def read_stat_then_gone(pid: int, proc: str = "/proc") -> Union[ProcStat, Unreadable]:
        reads.append(pid)
        if len(reads) == 1:
            return read_stat(pid, proc)
        return Unreadable(f"{proc}/{pid}/stat", "vanished", "No such process")

    monkeypatch.setattr("memdoor.snapshot.read_stat", read_stat_then_gone)
    snapshot = take_snapshot(COMPLETE, proc=MODERN)
    assert problems_of(snapshot) == [(f"{MODERN}/{COMPLETE}/stat", "vanished")]
    assert snapshot.gone
    assert snapshot.memory is not None and snapshot.mappings is not None


def test_zombie_in_a_tree(copied_tree: Path) -> None:
    stat = copied_tree / str(COMPLETE) / "stat"
    stat.write_text(stat.read_text().replace("(sleep) S", "(sleep) Z"))
    snapshot = take_snapshot(COMPLETE, proc=str(copied_tree))
    assert problems_of(snapshot) == [(f"{copied_tree}/{COMPLETE}/stat", "vanished")]
    assert snapshot.gone
    assert snapshot.memory is None and snapshot.mappings is None


def test_exiting_task_in_a_tree(copied_tree: Path) -> None:
    stat = copied_tree / str(COMPLETE) / "stat"
    stat.write_text(stat.read_text().replace(" 4194304 ", " 4194308 "))
    snapshot = take_snapshot(COMPLETE, proc=str(copied_tree))
    assert [(p.reason, p.detail) for p in snapshot.problems] == [
        ("vanished", "the process has exited (exiting)")
    ]
    assert snapshot.gone
    assert snapshot.memory is None and snapshot.mappings is None


# --- real processes ----------------------------------------------------------


def test_real_zombie_is_gone_not_empty() -> None:
    """A zombie has no memory left; a snapshot must not report it as 0 kB of a live process."""
    with zombie() as pid:
        snapshot = take_snapshot(pid)
    assert problems_of(snapshot) == [(f"/proc/{pid}/stat", "vanished")]
    assert snapshot.gone
    assert snapshot.memory is None and snapshot.mappings is None


def test_real_large_process_being_freed_is_gone_not_torn() -> None:
    """While the kernel frees a killed process's memory its RSS falls and cgroup v1 already
    names the root cgroup: no snapshot may carry those figures as the process's."""
    layout = find_cgroup_mounts()
    assert not isinstance(layout, Unreadable)
    ours = memory_cgroup_of(os.getpid(), layout)
    assert not isinstance(ours, Unreadable)
    snapshots = []
    with killed_while_large() as pid:
        while not snapshots or not snapshots[-1].gone:
            snapshots.append(take_snapshot(pid, ("memory",), cgroups=layout))
    *alive, dead = snapshots
    for snapshot in alive:
        assert snapshot.cgroup is not None and snapshot.cgroup.place.path == ours.path
    # Reads that raced with the exit may have vanished too; one of them says why.
    assert dead.problems and all(p.reason == "vanished" for p in dead.problems), dead.problems
    assert any(p.detail.endswith(("(exiting)", "(zombie)")) for p in dead.problems), dead.problems


def test_real_process_that_exited_before_the_snapshot(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--sockets")
    assert workload.stop() == 0
    snapshot = take_snapshot(workload.pid)
    assert snapshot.gone
    assert snapshot.problems and all(p.reason == "vanished" for p in snapshot.problems)
    assert snapshot.identity is None


def endpoint_of(workload: Workload, proto: str, family: int, state: str) -> tuple[str, int]:
    (info,) = (
        s
        for s in workload.info["sockets"]
        if (s["proto"], s["family"], s["state"]) == (proto, family, state)
    )
    address, _, port = info["local"].rpartition(":")
    return address.strip("[]"), int(port)


@pytest.fixture
def queued(spawn_workload: SpawnWorkload) -> Iterator[Workload]:
    """A workload whose queues are not all empty, so comparing them proves something.

    One connection waits in its IPv4 listener's accept queue (the workload
    never accepts after start-up) and one datagram in its unconnected IPv4
    UDP socket.
    """
    workload = spawn_workload("--touch-mb", 128, "--sockets")
    with contextlib.ExitStack() as stack:
        stack.enter_context(socket.create_connection(endpoint_of(workload, "tcp", 4, "LISTEN")))
        sender = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        sender.sendto(b"x" * 100, endpoint_of(workload, "udp", 4, "UNCONN"))
        # The handshake's last ACK is processed asynchronously; wait until the
        # kernel counts the connection in the backlog.
        deadline = time.monotonic() + 30
        while not any(s.state == "LISTEN" and s.recv_q for s in ss_connections(workload.pid)):
            assert time.monotonic() < deadline, "the connection never reached the accept queue"
            time.sleep(0.05)
        yield workload


@needs_ss
def test_real_process_against_the_kernel(queued: Workload) -> None:
    workload = queued
    pid = workload.pid
    snapshot = take_snapshot(pid)
    # Read right after; the workload holds still, so only a few pages may differ.
    vm_rss = kb_field(f"/proc/{pid}/status", "VmRSS")
    rollup_pss = kb_field(f"/proc/{pid}/smaps_rollup", "Pss")
    rollup_uss = sum(
        kb_field(f"/proc/{pid}/smaps_rollup", field)
        for field in ("Private_Clean", "Private_Dirty", "Private_Hugetlb")
    )
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    seen_by_ss = {s.inode: s for s in ss_connections(pid)}

    assert snapshot.problems == []
    assert not snapshot.gone

    memory = snapshot.memory
    assert memory is not None
    assert memory.rss_kb is not None and memory.pss_kb is not None and memory.uss_kb is not None
    assert memory.rss_kb >= 128 * MIB_KB
    assert abs(memory.rss_kb - vm_rss) <= 256
    # Summed per mapping, PSS rounds down once per mapping: a few hundred kB at most.
    assert abs(memory.pss_kb - rollup_pss) <= 512
    assert abs(memory.uss_kb - rollup_uss) <= 256
    assert memory.mem_total_kb == kb_field("/proc/meminfo", "MemTotal")

    mappings = snapshot.mappings
    assert mappings is not None
    assert len(mappings) == len(maps) == workload.info["mappings"]
    for mapping, line in zip(mappings, maps):
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        assert (mapping.start, mapping.end) == (start, end)
        assert mapping.size_kb == (end - start) // 1024
        assert mapping.rss_kb is not None
    assert sum(m.rss_kb or 0 for m in mappings) >= 128 * MIB_KB

    connections = snapshot.connections
    assert connections is not None
    assert {c.inode for c in connections} == set(seen_by_ss)
    assert {c.inode for c in connections} == {s["inode"] for s in workload.info["sockets"]}
    assert {c.local_address for c in connections} >= {"127.0.0.1", "::1"}
    for conn in connections:
        ss = seen_by_ss[conn.inode]
        assert (conn.protocol, conn.family) == (ss.proto, ss.family)
        assert conn.state == kernel_state(ss.state)
        assert conn.local == str(ss.local)
        if ss.remote is None:
            assert conn.remote_port == 0
            assert conn.remote_address in ("0.0.0.0", "::")
        else:
            assert conn.remote == str(ss.remote)
        assert conn.rx_queue == ss.recv_q
        # For a listener ss's Send-Q is the backlog limit; /proc/net prints 0 there.
        if conn.state != "LISTEN":
            assert conn.tx_queue == ss.send_q
    by_kind = {(c.protocol, c.family, c.state): c for c in connections}
    assert by_kind["tcp", 4, "LISTEN"].rx_queue == 1
    assert by_kind["udp", 4, "CLOSE"].rx_queue > 0

    assert snapshot.tree is not None
    assert snapshot.tree[0].pid == os.getpid()
    assert snapshot.tree[-1].pid == 1
    assert snapshot.oom is not None
    assert snapshot.oom.score == int(Path(f"/proc/{pid}/oom_score").read_text())
    assert snapshot.oom.score_adj == int(Path(f"/proc/{pid}/oom_score_adj").read_text())
