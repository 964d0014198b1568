"""A temporary memory cgroup (v1 or v2) whose limit the kernel enforces, always removed.

An OOM kill that memdoor must catch needs a real limit: the tests and the
capture benchmark make their kills in one of these, and ``memdoor demo`` is
meant to, so the host's own memory is never at stake.

The cgroup is a child of this process's own memory cgroup, so nothing is
left at the root of the host's hierarchy, and the processes started in it are
owned by the cgroup object: they are killed and reaped before the directory is
removed (rmdir fails with EBUSY while any process, even a zombie, is in it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
import uuid
from collections.abc import Iterator
from typing import Union

from memdoor.collect.cgroup import MemoryCgroup, find_cgroup_mounts, memory_cgroup_of
from memdoor.collect.reading import Unreadable
from memdoor.lab.unavailable import LabUnavailable
from memdoor.lab.workload_parent import Workload, start_workload

_LIMIT_FILE = {1: "memory.limit_in_bytes", 2: "memory.max"}
# Without these, a host with swap would swap the process out instead of killing it.
_SWAP_LIMIT_FILE = {1: "memory.memsw.limit_in_bytes", 2: "memory.swap.max"}


class LiveCgroup:
    """A memory cgroup directory and the workloads started in it."""

    def __init__(self, own: MemoryCgroup, directory: str) -> None:
        self.own = own
        self.directory = directory
        self.workloads: list[Workload] = []

    @property
    def version(self) -> int:
        return self.own.version

    def read(self, name: str) -> str:
        with open(os.path.join(self.directory, name)) as handle:
            return handle.read()

    def set_limit(self, limit_bytes: int) -> None:
        """Set the memory limit and hold swap to the same bound, so overshooting means a kill."""
        with open(os.path.join(self.directory, _LIMIT_FILE[self.version]), "w") as handle:
            handle.write(str(limit_bytes))
        swap = os.path.join(self.directory, _SWAP_LIMIT_FILE[self.version])
        if os.path.exists(swap):
            with open(swap, "w") as handle:
                # v1 memsw counts memory plus swap; v2 swap.max counts swap alone.
                handle.write(str(limit_bytes) if self.version == 1 else "0")

    def spawn(self, *args: Union[str, int]) -> Workload:
        """A lab workload that joins the cgroup before exec, so all its pages count."""
        workload = start_workload(*args, cgroup=self.directory)
        self.workloads.append(workload)
        return workload

    def remove(self) -> None:
        """Reap our workloads, kill anything else that got in, then rmdir (EBUSY until empty)."""
        for workload in self.workloads:
            workload.stop()
        remove_cgroup_directory(self.directory)


def _members(directory: bytes) -> list[int]:
    try:
        with open(os.path.join(directory, b"cgroup.procs"), "rb") as procs:
            return [int(pid) for pid in procs.read().split()]
    except FileNotFoundError:
        return []


def remove_cgroup_directory(directory: Union[str, bytes], timeout: float = 30.0) -> None:
    """Kill whatever is in it, then rmdir: EBUSY until every process, zombies too, is
    gone and the kernel has let go of their charge. Gone already is fine."""
    raw = os.fsencode(directory)
    deadline = time.monotonic() + timeout
    while True:
        for pid in _members(raw):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            os.rmdir(raw)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def live_memory_cgroup(limit_bytes: int) -> Iterator[LiveCgroup]:
    """A fresh child of our own memory cgroup with limit_bytes as its limit.

    Raises LabUnavailable when this host cannot give us one (not root, no memory
    controller for our children); the cgroup is removed however the block ends.
    """
    if os.geteuid() != 0:
        raise LabUnavailable("creating a memory cgroup needs root")
    layout = find_cgroup_mounts()
    if isinstance(layout, Unreadable):
        raise LabUnavailable(f"cgroup mounts unreadable: {layout.detail}")
    own = memory_cgroup_of(os.getpid(), layout)
    if isinstance(own, Unreadable):
        raise LabUnavailable(f"no memory cgroup of our own: {own.what}: {own.detail}")
    directory = os.path.join(own.directory, f"memdoor-lab-{uuid.uuid4().hex[:12]}")
    os.mkdir(directory)
    cgroup = LiveCgroup(own, directory)
    try:
        if not os.path.exists(os.path.join(directory, _LIMIT_FILE[own.version])):
            raise LabUnavailable(
                f"children of {own.directory} get no memory controller (cgroup v2 needs "
                "'+memory' in cgroup.subtree_control, impossible while processes live there)"
            )
        cgroup.set_limit(limit_bytes)
        yield cgroup
    finally:
        cgroup.remove()
