from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Union

import pytest

from memdoor.collect.cgroup import (
    CgroupFigures,
    CgroupMounts,
    MemoryCgroup,
    find_cgroup_mounts,
    memory_cgroup_of,
    read_cgroup_memory,
    read_oom_kill_count,
    read_usage_bytes,
)
from memdoor.collect.reading import Unreadable
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.workload import MIB
from memdoor.procfs.cgroup import CgroupMount

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cgroup"
GIB = 1024 * MIB


def fixture_layout(tree: Union[str, Path]) -> CgroupMounts:
    root = FIXTURES / tree if isinstance(tree, str) else tree
    layout = find_cgroup_mounts(proc_root=str(root / "proc"), fs_root=str(root))
    assert isinstance(layout, CgroupMounts), layout
    return layout


def fixture_cgroup(tree: Union[str, Path], pid: int) -> MemoryCgroup:
    root = FIXTURES / tree if isinstance(tree, str) else tree
    cg = memory_cgroup_of(pid, fixture_layout(root), proc_root=str(root / "proc"))
    assert isinstance(cg, MemoryCgroup), cg
    return cg


def fixture_memory(tree: Union[str, Path], pid: int) -> CgroupFigures:
    memory = read_cgroup_memory(fixture_cgroup(tree, pid))
    assert isinstance(memory, CgroupFigures), memory
    return memory


def under(tree: str, relative: str = "") -> str:
    directory = str(FIXTURES / tree / "sys/fs/cgroup")
    return os.path.join(directory, relative) if relative else directory


def test_layout_of_a_pure_v2_host() -> None:
    layout = fixture_layout("v2")

    assert layout.v2 == CgroupMount("/sys/fs/cgroup", 2, (), "/")
    assert layout.v2_memory
    assert layout.v1_memory is None
    assert layout.problems == ()


def test_layout_of_a_hybrid_host() -> None:
    layout = fixture_layout("hybrid")

    assert layout.v2 == CgroupMount("/sys/fs/cgroup/unified", 2, (), "/")
    assert not layout.v2_memory
    assert layout.v1_memory == CgroupMount("/sys/fs/cgroup/memory", 1, ("memory",), "/")


def test_layout_of_a_pure_v1_host() -> None:
    layout = fixture_layout("v1")

    assert layout.v2 is None
    assert layout.v1_memory == CgroupMount("/sys/fs/cgroup/memory", 1, ("memory",), "/")


def test_v2_process_with_the_limit_on_an_ancestor() -> None:
    memory = fixture_memory("v2", 4242)

    worker = under("v2", "system.slice/app.service/worker")
    service = under("v2", "system.slice/app.service")
    assert memory.place == MemoryCgroup(2, worker, under("v2"), "/system.slice/app.service/worker")
    assert memory.usage_bytes == 384 * MIB
    assert (memory.limit_bytes, memory.limit_directory) == (GIB, service)
    # The kernel compares the service's usage (its other children included) with its limit.
    assert memory.limit_usage_bytes == 512 * MIB
    assert memory.usage_percent == pytest.approx(50.0)
    assert (memory.high_bytes, memory.high_directory) == (768 * MIB, service)
    assert memory.oom_counters_source == os.path.join(worker, "memory.events.local")
    assert memory.oom_counters == {
        "low": 0,
        "high": 0,
        "max": 4,
        "oom": 1,
        "oom_kill": 1,
        "oom_group_kill": 0,
    }
    assert memory.stat is not None and memory.stat["anon"] == 352 * MIB


def test_parent_limit_wins_over_a_looser_own_limit() -> None:
    memory = fixture_memory("v2", 4243)

    assert memory.limit_bytes == GIB
    assert memory.limit_directory == under("v2", "system.slice/app.service")
    assert memory.usage_bytes == 100 * MIB


def test_v2_cgroup_without_memory_controller_is_charged_to_its_parent() -> None:
    cg = fixture_cgroup("v2", 4244)

    assert cg.directory == under("v2", "system.slice/app.service/worker")
    assert cg.path == "/system.slice/app.service/worker/nomem"


def test_hybrid_host_uses_the_v1_hierarchy() -> None:
    memory = fixture_memory("hybrid", 4242)

    directory = under("hybrid", "memory/process_api/abc")
    assert memory.place == MemoryCgroup(1, directory, under("hybrid", "memory"), "/process_api/abc")
    assert memory.usage_bytes == 6500352
    assert (memory.limit_bytes, memory.limit_directory) == (256 * MIB, directory)
    assert memory.usage_percent == pytest.approx(6500352 * 100 / (256 * MIB))
    assert (memory.high_bytes, memory.high_directory) == (None, None)
    assert memory.oom_counters == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 0}
    assert memory.oom_counters_source == os.path.join(directory, "memory.oom_control")


def test_v1_root_cgroup_has_no_limit() -> None:
    memory = fixture_memory("hybrid", 1)

    assert memory.place.directory == under("hybrid", "memory")
    assert memory.usage_bytes == 2 * GIB
    assert (memory.limit_bytes, memory.limit_directory, memory.usage_percent) == (None, None, None)
    assert memory.oom_counters["oom_kill"] == 5


def test_v1_host_limit_on_an_ancestor() -> None:
    memory = fixture_memory("v1", 4242)

    assert memory.place.directory == under("v1", "memory/machine.slice/vm1")
    assert memory.limit_bytes == GIB
    assert memory.limit_directory == under("v1", "memory/machine.slice")
    assert memory.limit_usage_bytes == 768 * MIB
    assert memory.usage_percent == pytest.approx(75.0)
    assert memory.oom_counters == {"oom_kill_disable": 0, "under_oom": 1, "oom_kill": 2}


def test_v1_ancestor_without_use_hierarchy_does_not_limit() -> None:
    memory = fixture_memory("v1", 4243)

    assert (memory.limit_bytes, memory.limit_directory, memory.usage_percent) == (None, None, None)


def test_container_with_cgroup_namespace() -> None:
    memory = fixture_memory("container", 1)

    top = under("container")
    assert memory.place == MemoryCgroup(2, top, top, "/")
    assert (memory.limit_bytes, memory.limit_directory) == (512 * MIB, top)
    assert memory.usage_percent == pytest.approx(50 * 100 / 512)
    # A kernel before 5.2 has no memory.events.local: the hierarchical file stands in.
    assert memory.oom_counters_source == os.path.join(top, "memory.events")
    assert memory.oom_counters["oom_kill"] == 0


def test_container_with_bind_mounted_v1_subtree() -> None:
    memory = fixture_memory("docker-v1", 1)

    top = under("docker-v1", "memory")
    assert memory.place == MemoryCgroup(1, top, top, "/docker/0123abcd")
    assert (memory.limit_bytes, memory.limit_directory) == (512 * MIB, top)


def test_cgroup_outside_the_bind_mount_is_not_visible() -> None:
    root = FIXTURES / "docker-v1"
    found = memory_cgroup_of(77, fixture_layout("docker-v1"), proc_root=str(root / "proc"))

    assert isinstance(found, Unreadable)
    assert found.reason == "error"
    assert "/system.slice/other.service is not below /docker/0123abcd" in found.detail


def test_unlimited_everywhere() -> None:
    memory = fixture_memory("unlimited", 4242)

    assert memory.usage_bytes == 70 * MIB
    assert (memory.limit_bytes, memory.limit_directory, memory.limit_usage_bytes) == (
        None,
        None,
        70 * MIB,
    )
    assert memory.usage_percent is None
    assert (memory.high_bytes, memory.high_directory) == (None, None)


def test_process_in_the_v2_root_cgroup() -> None:
    cg = fixture_cgroup("root-cgroup", 4242)
    memory = read_cgroup_memory(cg)

    assert cg.directory == cg.top == under("root-cgroup")
    assert isinstance(memory, CgroupFigures)
    assert (memory.usage_bytes, memory.limit_bytes, memory.usage_percent) == (None, None, None)
    assert (memory.oom_counters, memory.oom_counters_source) == ({}, None)
    assert memory.stat is not None and memory.stat["anon"] == GIB
    usage = read_usage_bytes(cg)
    assert isinstance(usage, Unreadable) and usage.reason == "vanished"
    count = read_oom_kill_count(cg)
    assert isinstance(count, Unreadable) and "root has no OOM counters" in count.detail


@pytest.mark.parametrize(
    ("tree", "pid", "usage"),
    [("v2", 4242, 384 * MIB), ("hybrid", 4242, 6500352), ("container", 1, 50 * MIB)],
)
def test_usage_poll(tree: str, pid: int, usage: int) -> None:
    assert read_usage_bytes(fixture_cgroup(tree, pid)) == usage


@pytest.mark.parametrize(
    ("tree", "pid", "count"),
    [("v2", 4242, 1), ("v1", 4242, 2), ("hybrid", 4242, 0), ("container", 1, 0)],
)
def test_oom_kill_count(tree: str, pid: int, count: int) -> None:
    assert read_oom_kill_count(fixture_cgroup(tree, pid)).kills == count


def test_oom_kill_count_of_a_kernel_that_does_not_count() -> None:
    count = read_oom_kill_count(fixture_cgroup("v1", 4243))

    assert isinstance(count, Unreadable)
    assert count.reason == "malformed"
    assert count.what.endswith("legacy/child/memory.oom_control")


@pytest.fixture
def v2_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "v2"
    shutil.copytree(FIXTURES / "v2", copy)
    return copy


def test_malformed_limit_is_reported(v2_copy: Path) -> None:
    (v2_copy / "sys/fs/cgroup/system.slice/app.service/memory.max").write_text("lots\n")

    memory = read_cgroup_memory(fixture_cgroup(v2_copy, 4242))

    assert isinstance(memory, Unreadable)
    assert memory.reason == "malformed"
    assert memory.what.endswith("app.service/memory.max")


def test_cgroup_removed_during_the_walk(v2_copy: Path) -> None:
    cg = fixture_cgroup(v2_copy, 4242)
    (v2_copy / "sys/fs/cgroup/system.slice/memory.max").unlink()

    memory = read_cgroup_memory(cg)

    assert isinstance(memory, Unreadable)
    assert memory.reason == "vanished"


def test_process_gone() -> None:
    found = memory_cgroup_of(999, fixture_layout("v2"), proc_root=str(FIXTURES / "v2/proc"))

    assert isinstance(found, Unreadable) and found.reason == "vanished"


def test_no_memory_controller_anywhere(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/7").mkdir()
    shutil.copy(FIXTURES / "v2/proc/self/mountinfo", tmp_path / "proc/self/mountinfo")
    (tmp_path / "proc/7/cgroup").write_text("0::/\n")
    (tmp_path / "sys/fs/cgroup").mkdir(parents=True)
    (tmp_path / "sys/fs/cgroup/cgroup.controllers").write_text("cpu io pids\n")
    layout = fixture_layout(tmp_path)

    found = memory_cgroup_of(7, layout, proc_root=str(tmp_path / "proc"))

    assert not layout.v2_memory
    assert isinstance(found, Unreadable)
    assert found.detail == "no memory cgroup controller is mounted on this host"


def test_unreadable_v2_root_is_kept_as_a_problem(tmp_path: Path) -> None:
    (tmp_path / "proc/self").mkdir(parents=True)
    shutil.copy(FIXTURES / "v2/proc/self/mountinfo", tmp_path / "proc/self/mountinfo")

    layout = fixture_layout(tmp_path)

    assert not layout.v2_memory
    assert [problem.what for problem in layout.problems] == [
        str(tmp_path / "sys/fs/cgroup/cgroup.controllers")
    ]


def test_unreadable_mountinfo(tmp_path: Path) -> None:
    layout = find_cgroup_mounts(proc_root=str(tmp_path))

    assert isinstance(layout, Unreadable) and layout.reason == "vanished"


def test_directory_outside_its_top_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="is not below"):
        read_cgroup_memory(
            MemoryCgroup(2, under("v2", "system.slice/app.service"), under("unlimited"), "/")
        )


# Real kernel from here on: a child of this process's own memory cgroup.


def host_layout() -> CgroupMounts:
    layout = find_cgroup_mounts()
    if isinstance(layout, Unreadable):
        pytest.skip(f"cannot read this host's cgroup mounts: {layout.detail}")
    return layout


def test_layout_of_this_host() -> None:
    layout = host_layout()

    if layout.v2_memory:
        assert layout.v2 is not None
        controllers = Path(layout.directory(layout.v2), "cgroup.controllers").read_text()
        assert "memory" in controllers.split()
    elif layout.v1_memory is not None:
        assert os.path.ismount(layout.directory(layout.v1_memory))
        assert os.path.exists(os.path.join(layout.directory(layout.v1_memory), "memory.stat"))
    else:
        pytest.skip("this host mounts no memory cgroup controller")


def kernel_usage(directory: str, version: int) -> int:
    name = "memory.current" if version == 2 else "memory.usage_in_bytes"
    return int(Path(directory, name).read_text())


def test_real_cgroup_usage_and_limit() -> None:
    with live_memory_cgroup(256 * MIB) as cgroup:
        workload = cgroup.spawn("--touch-mb", 64)

        cg = memory_cgroup_of(workload.pid, host_layout())
        assert isinstance(cg, MemoryCgroup), cg
        memory = read_cgroup_memory(cg)
        expected_usage = kernel_usage(cgroup.directory, cgroup.version)
        poll = read_usage_bytes(cg)

    assert cg.directory == cgroup.directory
    assert isinstance(memory, CgroupFigures), memory
    assert memory.usage_bytes is not None and memory.usage_bytes >= 64 * MIB
    # The workload is idle, so only per-CPU charge batching can move the figure.
    assert abs(memory.usage_bytes - expected_usage) <= 2 * MIB
    assert isinstance(poll, int) and abs(poll - expected_usage) <= 2 * MIB
    assert (memory.limit_bytes, memory.limit_directory) == (256 * MIB, cgroup.directory)
    assert memory.limit_usage_bytes == memory.usage_bytes
    assert memory.usage_percent == pytest.approx(memory.usage_bytes * 100 / (256 * MIB))
    assert memory.oom_counters.get("oom_kill") == 0


def test_real_oom_kill_is_counted() -> None:
    with live_memory_cgroup(64 * MIB) as cgroup:
        # Paced growth: the limit is reached about 2 s after the ready line, long
        # after the cgroup has been looked up while the process is alive.
        workload = cgroup.spawn("--grow-mb-per-s", 32, "--grow-to-mb", 1024)
        cg = memory_cgroup_of(workload.pid, host_layout())
        assert isinstance(cg, MemoryCgroup), cg
        before = read_oom_kill_count(cg)

        status = workload.proc.wait(timeout=120)

        # Read while the cgroup exists: the count goes with the directory.
        after = read_oom_kill_count(cg)
        memory = read_cgroup_memory(cg)

    assert status == -signal.SIGKILL
    assert (before.kills, after.kills) == (0, 1)
    assert isinstance(memory, CgroupFigures) and memory.oom_counters["oom_kill"] == 1


def test_removed_cgroup_reads_as_vanished() -> None:
    with live_memory_cgroup(64 * MIB) as cgroup:
        workload = cgroup.spawn()
        cg = memory_cgroup_of(workload.pid, host_layout())
        assert isinstance(cg, MemoryCgroup), cg
    gone = read_oom_kill_count(cg)

    assert not os.path.exists(cgroup.directory)
    assert isinstance(gone, Unreadable) and gone.reason == "vanished"


def test_the_processes_of_one_cgroup_share_its_value() -> None:
    with live_memory_cgroup(256 * MIB) as cgroup, live_memory_cgroup(256 * MIB) as other:
        first, second = cgroup.spawn(), cgroup.spawn()
        elsewhere = other.spawn()
        layout = host_layout()
        found = [memory_cgroup_of(w.pid, layout) for w in (first, second, elsewhere)]
    assert isinstance(found[0], MemoryCgroup) and found[0].directory == cgroup.directory
    assert found[1] is found[0]
    assert isinstance(found[2], MemoryCgroup) and found[2].directory == other.directory
