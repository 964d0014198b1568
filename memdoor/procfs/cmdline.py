"""Parse /proc/PID/cmdline into argv."""

from __future__ import annotations


def parse_cmdline(data: bytes) -> list[str]:
    """NUL-separated argv; a process may rewrite it (setproctitle) with spaces instead.

    Kernel threads and zombies have an empty cmdline, which gives an empty list.
    """
    if not data:
        return []
    parts = data.rstrip(b"\0").split(b"\0")
    return [part.decode("utf-8", "surrogateescape") for part in parts]
