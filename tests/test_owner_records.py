"""Records say whose the process is: real processes in real cgroups named as runtimes name
theirs, watched in-process and by the real daemon, read back from a real journald."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memdoor.collect.cgroup import find_cgroup_mounts
from memdoor.collect.liveness import Liveness, Verdict
from memdoor.collect.reading import Unreadable
from memdoor.emitter import TargetRecords
from memdoor.lab.daemon_process import DaemonProcess, write_config
from memdoor.lab.private_journald import RealJournald, running_journald
from memdoor.oom.kernel_log import KernelLog
from memdoor.oom.kill import Kill
from memdoor.oom.nearby import NearbyKill
from memdoor.procfs.cgroup_owner import CgroupOwner, Container, Pod
from memdoor.procfs.kmsg import OomKillReport
from memdoor.records import RecordLog
from memdoor.render.bounded import RECORD_BUDGET
from memdoor.render.ecs import to_ecs
from memdoor.render.owner import owner_dict
from memdoor.system_memory import MemTotal
from memdoor.vocabulary import monotonic_usec
from memdoor.watch.context import Services
from memdoor.watcher import ProcessWatcher
from tests.collect.named_cgroups import NamedCgroup, named_cgroup, own_memory_cgroup, unique, v2_top
from tests.record_schema import validate_record
from tests.test_watcher import LineCollector, identity_of, make_state, plant_kill
from tests.workload_fixture import SpawnWorkload

ID = "4b825dc642cb6eb9a060e54bf8d69288fbee4904e7b2b13a2d5f4dcc7c2b0e3a"
UID = "0f5c4a9e-1b2c-4d3e-8f9a-0123456789ab"
POD_CONTAINER = (
    "kubepods.slice/kubepods-burstable.slice/"
    f"kubepods-burstable-pod{UID.replace('-', '_')}.slice/cri-containerd-{ID}.scope"
)
INVOCATION = "5f1c7a0e2b3d4c6e8f9a0b1c2d3e4f50"
CONTAINER_OWNER = {"id": ID, "runtime": "containerd", "monitor": False}
POD_OWNER = {"uid": UID, "qos": "burstable"}


@pytest.fixture
def pod_container() -> Iterator[NamedCgroup]:
    """A containerd container's scope in a Burstable pod, below our own memory cgroup."""
    directory, path = own_memory_cgroup()
    with named_cgroup(directory, path, f"{unique('memdoor-owner-')}/{POD_CONTAINER}") as cgroup:
        yield cgroup


@pytest.fixture
def unit_cgroup() -> Iterator[NamedCgroup]:
    """A service from the root of the v2 hierarchy, with the invocation ID systemd would set."""
    slice_name = unique("memdoor-test-")
    with named_cgroup(v2_top(), "/", f"{slice_name}.slice/{slice_name}-app.service") as cgroup:
        os.setxattr(cgroup.directory, "trusted.invocation_id", INVOCATION.encode())
        yield cgroup


def _lines_of(state: Any) -> LineCollector:
    collector = LineCollector()
    state.records.writer = RecordLog(collector)
    return collector


def test_every_record_about_a_watched_process_carries_its_owner(
    pod_container: NamedCgroup, spawn_workload: SpawnWorkload
) -> None:
    """Found, crossed, and gone: the owner read once at adoption is on each."""
    workload = spawn_workload("--touch-mb", "16", cgroup=pod_container.directory)
    layout = find_cgroup_mounts()
    assert not isinstance(layout, Unreadable)
    state = make_state(
        workload.pid, threshold=1, services=Services(MemTotal(), layout, KernelLog(), None)
    )
    collector = _lines_of(state)
    watcher = ProcessWatcher(state, identity_of(workload.pid))
    problems = watcher.attach()
    watcher.records.target_found(pod_container.path, [], problems)
    asyncio.run(watcher._snapshot(0, force=True))
    assert watcher.evidence.last is not None
    watcher.records.full_snapshot(True, watcher.evidence.last, "crossed", "system")
    watcher.records.sample("above", 2.0, "system", watcher.evidence.last)
    workload.stop()
    asyncio.run(watcher.tick())
    records = [json.loads(line) for line in collector.lines]
    assert [r["event"] for r in records] == [
        "target_found",
        "threshold_crossed",
        "sample",
        "target_gone",
    ]
    for record in records:
        validate_record(record)
        owner = record["owner"]
        assert (owner["container"], owner["pod"]) == (CONTAINER_OWNER, POD_OWNER)
        assert owner["unit"] is None or owner["unit"].endswith((".service", ".scope"))


def test_an_oom_killed_record_carries_its_owner(
    unit_cgroup: NamedCgroup, spawn_workload: SpawnWorkload
) -> None:
    workload = spawn_workload("--touch-mb", "16")
    unit_cgroup.enter(workload.pid)
    layout = find_cgroup_mounts()
    assert not isinstance(layout, Unreadable)
    services = Services(MemTotal(), layout, KernelLog(), None)
    state = make_state(workload.pid, threshold=99, services=services)
    collector = _lines_of(state)
    watcher = ProcessWatcher(state, identity_of(workload.pid))
    assert not [p for p in watcher.attach() if "invocation_id" in p.what]
    asyncio.run(watcher.tick())
    plant_kill(state, workload.pid)
    workload.stop()
    asyncio.run(watcher.tick())
    (killed,) = [json.loads(line) for line in collector.lines]
    validate_record(killed)
    assert killed["event"] == "oom_killed"
    slice_name, unit = unit_cgroup.path.strip("/").split("/")
    assert killed["owner"] == {
        "unit": unit,
        "slice": slice_name,
        "user_unit": None,
        "user_slice": None,
        "invocation_id": INVOCATION,
        "container": None,
        "pod": None,
    }


def test_records_with_the_largest_owner_stay_under_16_kib(spawn_workload: SpawnWorkload) -> None:
    """Unit names as long as systemd allows, escapes doubled by JSON, on a process whose
    summary alone would fill the budget: the snapshot gives way, not the limit."""
    workload = spawn_workload("--mappings", "20000", "--tcp-pairs", "300")
    state = make_state(workload.pid, threshold=1)
    state.records.redact_cmdline = False
    collector = _lines_of(state)
    identity = dataclasses.replace(
        identity_of(workload.pid), cmdline=["java", "-cp", "x" * 100_000, "Main"]
    )
    watcher = ProcessWatcher(state, identity)
    longest = "\\x2d" * 61 + ".service"
    owner = CgroupOwner(
        longest,
        "\\x2d" * 61 + ".slice",
        longest,
        "\\x2d" * 61 + ".slice",
        container=Container(ID, "containerd"),
        pod=Pod(UID, "besteffort"),
    )
    watcher.records.owner = owner_dict(owner, INVOCATION)
    asyncio.run(watcher._snapshot(0, force=True))
    assert watcher.evidence.last is not None
    watcher.records.full_snapshot(True, watcher.evidence.last, "crossed", "system")
    plant_kill(state, workload.pid, task_memcg="/" + "a" * 200, oom_memcg="/" + "a" * 200)
    asyncio.run(watcher._ended(Liveness(Verdict.EXITED, None, "gone")))
    events = [json.loads(line)["event"] for line in collector.lines]
    assert events == ["threshold_crossed", "oom_killed"]
    for line in collector.lines:
        assert len(line.encode()) <= RECORD_BUDGET, (json.loads(line)["event"], len(line))
        record = json.loads(line)
        validate_record(record)
        assert record["owner"]["unit"] == longest


def test_a_neighbours_kill_carries_the_owner_of_the_victims_cgroup() -> None:
    collector = LineCollector()
    state = make_state(1)
    records = TargetRecords(RecordLog(collector), state.records.target, redact_cmdline=True)
    path = "/" + POD_CONTAINER
    report = OomKillReport(
        pid=4242,
        name="java",
        evidence=("killed",),
        usec_since_boot=monotonic_usec(),
        task_memcg=path,
    )
    records.oom_kill_nearby(NearbyKill("t", 1, path, Kill(report), 4242, "java", 1))
    (record,) = [json.loads(line) for line in collector.lines]
    validate_record(record)
    assert record["owner"]["container"] == CONTAINER_OWNER
    assert record["owner"]["pod"] == POD_OWNER
    assert record["owner"]["invocation_id"] is None


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[RealJournald]:
    with running_journald(tmp_path / "j") as real:
        yield real


def _journal(journald: RealJournald, match: str) -> list[dict[str, Any]]:
    result = journald.journalctl("--all", "--output=json", match)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_daemon_says_whose_each_process_is_in_records_journal_fields_and_ecs(
    tmp_path: Path,
    journald: RealJournald,
    unit_cgroup: NamedCgroup,
    pod_container: NamedCgroup,
    spawn_workload: SpawnWorkload,
) -> None:
    in_unit = spawn_workload()
    unit_cgroup.enter(in_unit.pid)
    in_pod = spawn_workload(cgroup=pod_container.directory)
    config = write_config(
        tmp_path / "owner.toml",
        f'[sinks.journald]\nenabled = true\nsocket = "{journald.socket_path}"\n'
        f'[[target]]\nname = "service"\npid = {in_unit.pid}\nthreshold = 99\ninterval = 0.2\n'
        f'[[target]]\nname = "pod"\npid = {in_pod.pid}\nthreshold = 99\ninterval = 0.2\n',
    )
    daemon = DaemonProcess(config)
    try:
        found = {
            name: daemon.wait_record(
                lambda r, name=name: r["event"] == "target_found" and r["target"] == name
            )
            for name in ("service", "pod")
        }
        in_pod.stop()
        gone = daemon.wait_record(lambda r: r["event"] == "target_gone" and r["target"] == "pod")
    finally:
        daemon.stop()
    for record in (*found.values(), gone):
        validate_record(record)
    slice_name, unit = unit_cgroup.path.strip("/").split("/")
    service = found["service"]["owner"]
    assert (service["unit"], service["slice"], service["invocation_id"]) == (
        unit,
        slice_name,
        INVOCATION,
    )
    assert found["pod"]["owner"]["container"] == CONTAINER_OWNER
    assert found["pod"]["owner"]["pod"] == POD_OWNER
    assert gone["owner"] == found["pod"]["owner"]

    # journalctl MEMDOOR_UNIT=… finds the unit's records, and the invocation ID joins
    # them to the unit's own entries (_SYSTEMD_INVOCATION_ID).
    deadline = time.monotonic() + 10
    while not _journal(journald, f"MEMDOOR_CONTAINER_ID={ID}") and time.monotonic() < deadline:
        time.sleep(0.1)
    by_unit = _journal(journald, f"MEMDOOR_UNIT={unit}")
    assert [e["MEMDOOR_EVENT"] for e in by_unit] == ["target_found"]
    assert by_unit[0]["MEMDOOR_INVOCATION_ID"] == INVOCATION
    assert len(_journal(journald, f"MEMDOOR_INVOCATION_ID={INVOCATION}")) == 1
    by_pod = _journal(journald, f"MEMDOOR_POD_UID={UID}")
    assert [e["MEMDOOR_EVENT"] for e in by_pod] == ["target_found", "target_gone"]
    assert all(e["MEMDOOR_CONTAINER_ID"] == ID for e in by_pod)

    ecs = to_ecs(found["pod"], "host-1")
    assert ecs["container"] == {"id": ID, "runtime": "containerd"}
    assert ecs["orchestrator"] == {"type": "kubernetes", "resource": {"type": "pod", "id": UID}}
    assert "container" not in to_ecs(found["service"], "host-1")
