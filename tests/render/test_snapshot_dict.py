"""Cgroup paths in records are named as the kernel log and /proc/PID/cgroup name them."""

from __future__ import annotations

from pathlib import Path

from memdoor.collect.cgroup import find_cgroup_mounts, memory_cgroup_of, read_cgroup_memory
from memdoor.collect.reading import Unreadable
from memdoor.render.snapshot_dict import cgroup_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "cgroup"


def figures(tree: str, pid: int):
    root = FIXTURES / tree
    layout = find_cgroup_mounts(proc_root=str(root / "proc"), fs_root=str(root))
    assert not isinstance(layout, Unreadable), layout
    cgroup = memory_cgroup_of(pid, layout, proc_root=str(root / "proc"))
    assert not isinstance(cgroup, Unreadable), cgroup
    memory = read_cgroup_memory(cgroup)
    assert not isinstance(memory, Unreadable), memory
    return memory


def test_a_limit_on_an_ancestor_is_named_by_its_cgroup_path() -> None:
    memory = figures("v2", 4242)
    data = cgroup_dict(memory)
    assert data["path"].endswith("/app.service/worker")
    assert data["limit_path"] == data["path"].rsplit("/", 1)[0]
    assert data["limit_kb"] == 1024 * 1024


def test_a_bind_mounted_subtree_keeps_its_hierarchy_name() -> None:
    memory = figures("docker-v1", 1)
    data = cgroup_dict(memory)
    assert data["path"] == "/docker/0123abcd"
    assert data["limit_path"] == "/docker/0123abcd"
