"""Real cgroups named the way systemd, kubelet and container runtimes name theirs, always removed.

memdoor reads whose a process is from its cgroup path, so the tests make those
paths for real: nested directories under a parent (our own memory cgroup, or
the top of the cgroup v2 hierarchy for a unit's path from the root), a real
process moved in, and on the way out every process in them killed and every
directory removed, innermost first.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from memdoor.collect.cgroup import find_cgroup_mounts, memory_cgroup_of
from memdoor.collect.reading import Unreadable
from memdoor.lab.memory_cgroup import remove_cgroup_directory
from memdoor.lab.unavailable import LabUnavailable


@dataclass(frozen=True)
class NamedCgroup:
    """directory: the innermost cgroup made; path: it as /proc/PID/cgroup names it."""

    directory: str
    path: str

    def enter(self, pid: int) -> None:
        with open(os.path.join(self.directory, "cgroup.procs"), "w") as handle:
            handle.write(str(pid))


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def own_memory_cgroup() -> tuple[str, str]:
    """(directory, path) of this process's memory cgroup: where nested test cgroups go."""
    if os.geteuid() != 0:
        raise LabUnavailable("creating cgroups needs root")
    layout = find_cgroup_mounts()
    if isinstance(layout, Unreadable):
        raise LabUnavailable(f"cgroup mounts unreadable: {layout.detail}")
    own = memory_cgroup_of(os.getpid(), layout)
    if isinstance(own, Unreadable):
        raise LabUnavailable(f"no memory cgroup of our own: {own.detail}")
    return own.directory, own.path


def v2_top() -> str:
    """The directory of the cgroup v2 hierarchy's root as mounted here."""
    if os.geteuid() != 0:
        raise LabUnavailable("creating cgroups needs root")
    layout = find_cgroup_mounts()
    if isinstance(layout, Unreadable) or layout.v2 is None or layout.v2.root != "/":
        raise LabUnavailable("no cgroup v2 hierarchy mounted whole here")
    return layout.directory(layout.v2)


@contextlib.contextmanager
def named_cgroup(parent_directory: str, parent_path: str, relative: str) -> Iterator[NamedCgroup]:
    """Each component of relative made under parent; all of them removed on the way out."""
    made: list[str] = []
    directory = parent_directory
    try:
        for part in relative.split("/"):
            directory = os.path.join(directory, part)
            os.mkdir(directory)
            made.append(directory)
        path = parent_path.rstrip("/") + "/" + relative
        yield NamedCgroup(directory, path)
    finally:
        for each in reversed(made):
            remove_cgroup_directory(each)
