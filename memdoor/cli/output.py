"""Standard output that may be gone: a closed fd, a full disk, a reader that left."""

from __future__ import annotations

import os
import sys
from typing import Optional, TextIO

# sysexits.h: an output file could not be written.
EX_IOERR = 74


def write_stdout(text: str) -> Optional[str]:
    """Write and flush text to stdout; None, or why it could not be written."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        discard_unwritten(sys.stdout)
        return exc.strerror or str(exc)
    return None


def discard_unwritten(stream: TextIO) -> None:
    """Point the stream's fd at /dev/null once a write to it has failed.

    What could not be written stays in the buffer, and the interpreter's final
    flush would fail on it again: a second error message and exit status 120.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)
