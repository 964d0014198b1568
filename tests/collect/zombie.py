"""A real zombie: a child that has exited and that nobody has reaped yet.

Its /proc/PID directory is still there with state Z, but its memory, mappings
and fds are gone: the case between "running" and "vanished".
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def zombie() -> Iterator[int]:
    child = subprocess.Popen(["/bin/true"])
    try:
        stat = Path(f"/proc/{child.pid}/stat")
        deadline = time.monotonic() + 30
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            if time.monotonic() > deadline:
                raise AssertionError(f"pid {child.pid} never became a zombie")
            time.sleep(0.01)
        yield child.pid
    finally:
        child.wait()
