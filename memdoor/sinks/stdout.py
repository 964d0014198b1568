"""JSON lines on stdout, flushed per record.

Python block-buffers stdout when it is not a terminal; without a flush per
record a crash or a SIGKILL would lose the records that explain it.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, TextIO

from memdoor.vocabulary import decimal


class StdoutSink:
    name = "stdout"

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self._stream = stream if stream is not None else sys.stdout

    def write(self, line: str) -> None:
        """Raises OSError (EPIPE, EBADF, ENOSPC) for the dispatcher to report once."""
        self._stream.write(line + "\n")
        self._stream.flush()


def stdout_is_journal_stream() -> bool:
    """True when fd 1 is the stream systemd connected to journald (JOURNAL_STREAM=dev:ino).

    Then stdout lines land in the journal too, and writing records both there
    and through the native protocol would store every record twice.
    """
    stream = os.environ.get("JOURNAL_STREAM", "")
    dev_text, _, ino_text = stream.partition(":")
    dev, ino = decimal(dev_text), decimal(ino_text)
    if dev is None or ino is None:
        return False
    try:
        st = os.fstat(1)
    except OSError:
        return False
    return st.st_dev == dev and st.st_ino == ino
