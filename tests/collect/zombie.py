"""Real processes between "running" and "vanished": exiting, and zombies.

A zombie's /proc/PID directory is still there with state Z, but its memory,
mappings and fds are gone. Before that, a process that held a lot of memory
spends a while in do_exit() freeing it, with state R or D and PF_EXITING set.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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
