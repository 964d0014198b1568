"""Real processes between "running" and "vanished": doomed, exiting, and zombies.

A zombie's /proc/PID directory is still there with state Z, but its memory,
mappings and fds are gone. Before that, a process that held a lot of memory
spends a while in do_exit() freeing it, with state R or D and PF_EXITING set.
Before that again, SIGKILL may be pending for as long as the process cannot
run: frozen in a cgroup v1 freezer, it stays intact with the signal pending.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Freeing 1 GiB of touched pages takes long enough here to be read ~1,000 times.
LARGE_MB = 1024


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@contextlib.contextmanager
def zombie() -> Iterator[int]:
    child = subprocess.Popen(["/bin/true"])
    try:
        deadline = time.monotonic() + 30
        while _state(child.pid) != "Z":
            if time.monotonic() > deadline:
                raise AssertionError(f"pid {child.pid} never became a zombie")
            time.sleep(0.01)
        yield child.pid
    finally:
        child.wait()


@contextlib.contextmanager
def killed_while_large(megabytes: int = LARGE_MB) -> Iterator[int]:
    """A process holding megabytes of touched memory, SIGKILLed the moment before this yields.

    Not reaped until the block ends, so it ends as a zombie and its pid cannot be reused.
    """
    touch = (
        f"import sys; b = bytearray({megabytes} << 20); b[::4096] = b'x' * len(b[::4096]);"
        " print('ready', flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", touch], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        os.kill(child.pid, signal.SIGKILL)
        yield child.pid
    finally:
        child.kill()
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def _own_v1_freezer() -> Path:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hierarchy, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            directory = Path("/sys/fs/cgroup/freezer") / path.lstrip("/")
            if directory.is_dir():
                return directory
    pytest.skip("no cgroup v1 freezer mounted at /sys/fs/cgroup/freezer")


@contextlib.contextmanager
def killed_while_frozen() -> Iterator[int]:
    """A sleep frozen in a v1 freezer cgroup, then sent SIGKILL: it cannot act on it.

    (cgroup v2's freezer lets fatal signals through, so only v1 holds a kill
    pending.) Thawed, reaped and its cgroup removed when the block ends.
    """
    if os.geteuid() != 0:
        pytest.skip("creating a freezer cgroup needs root")
    directory = _own_v1_freezer() / f"memdoor-test-{uuid.uuid4().hex[:12]}"
    directory.mkdir()
    child = None
    try:
        child = subprocess.Popen(["sleep", "3600"])
        (directory / "cgroup.procs").write_text(str(child.pid))
        (directory / "freezer.state").write_text("FROZEN")
        deadline = time.monotonic() + 30
        while (directory / "freezer.state").read_text().strip() != "FROZEN":
            if time.monotonic() > deadline:
                raise AssertionError("the freezer never reached FROZEN")
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
        yield child.pid
    finally:
        (directory / "freezer.state").write_text("THAWED")
        if child is not None:
            child.kill()
            child.wait()
        directory.rmdir()
