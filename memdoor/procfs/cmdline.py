"""Parse /proc/PID/cmdline into argv."""

from __future__ import annotations

from memdoor.process_text import decode


def parse_cmdline(data: bytes) -> list[str]:
    """NUL-separated argv; a process may rewrite it (setproctitle) with spaces instead.

    Kernel threads and zombies have an empty cmdline, which gives an empty list.
    Each argument is the process's choice of bytes: see memdoor.process_text.
    """
    if not data:
        return []
    parts = data.rstrip(b"\0").split(b"\0")
    return [decode(part) for part in parts]
