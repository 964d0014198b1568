"""A pipe that holds one page, so a few lines fill it and a writer blocks."""

from __future__ import annotations

import fcntl
import os

PAGE = 4096
# fcntl has the name from Python 3.10; Linux has had the command since 2.6.35.
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def small_pipe() -> tuple[int, int]:
    """(read end, write end) of a new pipe with one page of room."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, PAGE)
    return read_end, write_end
