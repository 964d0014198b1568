"""A `python -m memdoor ...` child on a real pseudo-terminal: what a person sees."""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import time
from typing import Optional

from memdoor.lab.python_child import IMPORT_ROOT, module_command


def on_a_terminal(
    args: list[str],
    no_color: Optional[str],
    timeout: float = 60,
    stop_after: Optional[float] = None,
) -> str:
    """Everything `python -m memdoor ARGS` wrote to its terminal (stdout and stderr), as
    the terminal received it. stop_after: SIGTERM after so many seconds (a daemon).
    The command must exit 0."""
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm-256color"
    if no_color is not None:
        env["NO_COLOR"] = no_color
    master, slave = os.openpty()
    try:
        child = subprocess.Popen(
            module_command("memdoor", *args),
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=IMPORT_ROOT,
        )
        os.close(slave)
        slave = -1
        received = bytearray()
        stop_at = None if stop_after is None else time.monotonic() + stop_after
        while True:
            if stop_at is not None:
                select.select([master], [], [], max(0.0, stop_at - time.monotonic()))
                if time.monotonic() >= stop_at:
                    child.send_signal(signal.SIGTERM)
                    stop_at = None
                    continue
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:  # EIO: the child closed the terminal's last writer
                assert exc.errno == errno.EIO
                break
            if not chunk:
                break
            received += chunk
        assert child.wait(timeout) == 0, bytes(received)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    # The terminal's line discipline turns each \n into \r\n.
    return received.decode("utf-8").replace("\r\n", "\n")
