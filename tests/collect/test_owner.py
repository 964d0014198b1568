"""Whose a real process is: real cgroups named as kubelet, runtimes and systemd name theirs.

Fixture names follow each runtime's naming; see tests/procfs/test_cgroup_owner.py
for where each form comes from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from memdoor.collect.cgroup import find_cgroup_mounts
from memdoor.collect.owner import Ownership, owner_path, read_ownership
from memdoor.collect.reading import Unreadable
from memdoor.procfs.cgroup import CgroupEntry
from memdoor.procfs.cgroup_owner import Container, Pod
from tests.collect.named_cgroups import (
    NamedCgroup,
    named_cgroup,
    own_memory_cgroup,
    unique,
    v2_top,
)
from tests.workload_fixture import SpawnWorkload

ID = "4b825dc642cb6eb9a060e54bf8d69288fbee4904e7b2b13a2d5f4dcc7c2b0e3a"
UID = "0f5c4a9e-1b2c-4d3e-8f9a-0123456789ab"
INVOCATION = "5f1c7a0e2b3d4c6e8f9a0b1c2d3e4f50"
OTHER_INVOCATION = "00112233445566778899aabbccddeeff"


def _read(pid: int) -> Ownership:
    layout = find_cgroup_mounts()
    assert not isinstance(layout, Unreadable)
    return read_ownership(pid, layout)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        # cgroup v2: the one line.
        ([CgroupEntry(0, (), "/system.slice/a.service")], "/system.slice/a.service"),
        # Hybrid: the v2 line first, then name=systemd, then memory.
        (
            [
                CgroupEntry(9, ("name=systemd",), "/system.slice/b.service"),
                CgroupEntry(4, ("memory",), "/system.slice"),
                CgroupEntry(0, (), "/system.slice/a.service"),
            ],
            "/system.slice/a.service",
        ),
        # cgroup v1: name=systemd, even where memory has another path.
        (
            [
                CgroupEntry(9, ("name=systemd",), "/system.slice/b.service"),
                CgroupEntry(4, ("memory",), "/system.slice"),
                CgroupEntry(0, (), "/"),
            ],
            "/system.slice/b.service",
        ),
        # No systemd placement: the memory cgroup's, as the kernel log's task_memcg.
        (
            [
                CgroupEntry(9, ("name=systemd",), "/"),
                CgroupEntry(4, ("memory",), f"/docker/{ID}"),
                CgroupEntry(0, (), "/"),
            ],
            f"/docker/{ID}",
        ),
        ([CgroupEntry(4, ("memory",), "/"), CgroupEntry(0, (), "/")], None),
    ],
)
def test_the_path_read_is_systemds_placement_else_the_memory_cgroups(
    entries: list[CgroupEntry], expected: str
) -> None:
    assert owner_path(entries) == expected


@pytest.fixture
def memory_parent() -> tuple[str, str]:
    return own_memory_cgroup()


@pytest.mark.parametrize(
    ("relative", "container", "pod"),
    [
        (
            "kubepods.slice/kubepods-burstable.slice/"
            f"kubepods-burstable-pod{UID.replace('-', '_')}.slice/cri-containerd-{ID}.scope",
            Container(ID, "containerd"),
            Pod(UID, "burstable"),
        ),
        (f"kubepods/besteffort/pod{UID}/{ID}", Container(ID, None), Pod(UID, "besteffort")),
        (
            f"kubepods/pod{UID}/crio-conmon-{ID}",
            Container(ID, "cri-o", True),
            Pod(UID, "guaranteed"),
        ),
        (f"docker/{ID}", Container(ID, "docker"), None),
        (f"machine.slice/libpod-{ID}.scope", Container(ID, "podman"), None),
    ],
)
def test_a_process_in_a_runtimes_cgroup_is_that_containers(
    memory_parent: tuple[str, str],
    spawn_workload: SpawnWorkload,
    relative: str,
    container: Container,
    pod: Pod,
) -> None:
    directory, path = memory_parent
    top = unique("memdoor-owner-")
    with named_cgroup(directory, path, f"{top}/{relative}") as cgroup:
        workload = spawn_workload(cgroup=cgroup.directory)
        ownership = _read(workload.pid)
        assert (ownership.owner.container, ownership.owner.pod) == (container, pod)
        assert ownership.problems == ()


@pytest.fixture
def unit_cgroup() -> Iterator[NamedCgroup]:
    """A unit's cgroup from the root of the v2 hierarchy: /memdoor-test-X.slice/….service."""
    slice_name = unique("memdoor-test-")
    relative = f"{slice_name}.slice/{slice_name}-app.service"
    with named_cgroup(v2_top(), "/", relative) as cgroup:
        yield cgroup


def _unit_of(cgroup: NamedCgroup) -> tuple[str, str]:
    slice_name, unit = cgroup.path.strip("/").split("/")
    return unit, slice_name


def test_a_units_process_carries_the_unit_and_its_trusted_invocation_id(
    unit_cgroup: NamedCgroup, spawn_workload: SpawnWorkload
) -> None:
    os.setxattr(unit_cgroup.directory, "trusted.invocation_id", INVOCATION.encode())
    os.setxattr(unit_cgroup.directory, "user.invocation_id", OTHER_INVOCATION.encode())
    workload = spawn_workload()
    unit_cgroup.enter(workload.pid)
    ownership = _read(workload.pid)
    unit, slice_name = _unit_of(unit_cgroup)
    assert (ownership.owner.unit, ownership.owner.slice) == (unit, slice_name)
    assert ownership.owner.unit_path == unit_cgroup.path
    # trusted.* only PID 1 can have written: believed first.
    assert ownership.invocation_id == INVOCATION
    assert ownership.problems == ()


def test_user_invocation_id_where_trusted_is_not_set(
    unit_cgroup: NamedCgroup, spawn_workload: SpawnWorkload
) -> None:
    os.setxattr(unit_cgroup.directory, "user.invocation_id", OTHER_INVOCATION.encode())
    workload = spawn_workload()
    unit_cgroup.enter(workload.pid)
    assert _read(workload.pid).invocation_id == OTHER_INVOCATION


def test_a_process_below_its_units_cgroup_gets_the_units_invocation_id(
    unit_cgroup: NamedCgroup, spawn_workload: SpawnWorkload
) -> None:
    """A unit with Delegate= puts its processes in sub-cgroups of its own naming."""
    os.setxattr(unit_cgroup.directory, "trusted.invocation_id", INVOCATION.encode())
    with named_cgroup(unit_cgroup.directory, unit_cgroup.path, "payload") as payload:
        workload = spawn_workload()
        payload.enter(workload.pid)
        ownership = _read(workload.pid)
        assert ownership.owner.unit == _unit_of(unit_cgroup)[0]
        assert ownership.invocation_id == INVOCATION


def test_no_invocation_id_is_none_and_no_problem(
    unit_cgroup: NamedCgroup, spawn_workload: SpawnWorkload
) -> None:
    workload = spawn_workload()
    unit_cgroup.enter(workload.pid)
    ownership = _read(workload.pid)
    assert ownership.owner.unit == _unit_of(unit_cgroup)[0]
    assert (ownership.invocation_id, ownership.problems) == (None, ())


def test_a_malformed_invocation_id_is_a_problem_not_a_value(
    unit_cgroup: NamedCgroup, spawn_workload: SpawnWorkload
) -> None:
    """user.* can be written by whoever owns a delegated cgroup: only systemd's shape is kept."""
    os.setxattr(unit_cgroup.directory, "user.invocation_id", b"\x1b[31mnot-an-id" + b"x" * 500)
    workload = spawn_workload()
    unit_cgroup.enter(workload.pid)
    ownership = _read(workload.pid)
    assert ownership.invocation_id is None
    (problem,) = ownership.problems
    assert problem.reason == "malformed" and "user.invocation_id" in problem.what
    assert len(problem.detail) < 120


def test_a_process_that_is_gone_gives_a_problem_and_nobody(
    spawn_workload: SpawnWorkload,
) -> None:
    workload = spawn_workload()
    workload.stop()
    ownership = _read(workload.pid)
    assert ownership.owner.unit is None and ownership.invocation_id is None
    (problem,) = ownership.problems
    assert problem.reason == "vanished"
