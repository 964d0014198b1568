"""A real cgroup v2 directory under this process's own, with a process in it, removed after.

On these hosts the memory controller is on v1, but the unified hierarchy is
mounted and takes directories, processes and user.* extended attributes, which
is all systemd-oomd's marks and its pre-kill hook need.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from memdoor.collect.cgroup import find_cgroup_mounts


@dataclass
class Cgroup2:
    directory: str
    # From the hierarchy's root, as systemd-oomd names it.
    path: str
    child: subprocess.Popen[bytes]


def own_v2_path() -> str:
    with open("/proc/self/cgroup") as lines:
        for line in lines:
            if line.startswith("0::"):
                return line[3:].strip()
    pytest.skip("no cgroup v2 hierarchy")


@contextlib.contextmanager
def cgroup2_with_child() -> Iterator[Cgroup2]:
    layout = find_cgroup_mounts()
    if isinstance(layout, Exception) or getattr(layout, "v2", None) is None:
        pytest.skip("no cgroup v2 mount")
    root = layout.directory(layout.v2)
    path = os.path.join(own_v2_path(), f"memdoor-test-{uuid.uuid4().hex[:8]}")
    directory = os.path.join(root, path.lstrip("/"))
    try:
        os.mkdir(directory)
    except OSError as exc:
        pytest.skip(f"cannot create a cgroup v2 directory: {exc}")
    child = subprocess.Popen(["sleep", "60"])
    try:
        with open(os.path.join(directory, "cgroup.procs"), "w") as procs:
            procs.write(str(child.pid))
        yield Cgroup2(directory, path, child)
    finally:
        child.kill()
        child.wait()
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(directory)
