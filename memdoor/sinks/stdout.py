"""JSON lines on standard output, written by a thread so a reader that stops reading
costs records, never the daemon.

Each line goes out as soon as the reader takes it (no block buffering: a crash
or a SIGKILL must not lose the records that explain it). Lines bypass
sys.stdout and its encoding: records are UTF-8 (JSON's encoding) whatever the
locale, and no buffer of sys.stdout is left for the interpreter's exit to flush
into a pipe that no longer reads. See memdoor.sinks.line_writer for why a
thread rather than a non-blocking fd.
"""

from __future__ import annotations

import os
import sys
from typing import Literal, Optional, TextIO

from memdoor.sinks.line_writer import LineWriter, PutOutcome
from memdoor.vocabulary import decimal

# What stdout may hold that its reader has not taken yet: at least 256 records
# of the default detail (at most 16 KiB each), seconds of a busy daemon's
# output. Holding more would only delay the drops, with memory that the host is
# short of at the very moment memdoor reports.
QUEUE_LIMIT = 4 * 1024 * 1024
# The operator's one-line notices on stderr: a few hundred of them.
NOTICE_LIMIT = 64 * 1024

# What `run --format` and `demo --format` ask of stdout: "json" the records as the
# configuration renders them, "console" one short line per record for a person,
# "auto" the console view on a terminal and JSON anywhere else.
StdoutView = Literal["auto", "json", "console"]


def _stream_fd(stream: TextIO) -> Optional[int]:
    try:
        return stream.fileno()
    except (OSError, ValueError):
        # io.UnsupportedOperation, which is both: a stream in memory.
        return None


def _is_terminal(stream: Optional[TextIO]) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


class StdoutSink:
    """stdout, or the reason there is none (then every write is refused).

    A missing stdout is a disabled sink, said once at start; it is not a
    failure, which would be reported as one. A stream that is not a file
    descriptor (a test's capture, an embedding program's object) cannot block
    on a reader and is written directly.
    """

    name = "stdout"

    def __init__(
        self, stream: Optional[TextIO] = None, limit: int = QUEUE_LIMIT, view: StdoutView = "auto"
    ) -> None:
        """stream: sys.stdout unless given (sys.stdout is None when fd 1 was closed).
        limit: the bytes that may wait for the reader. view: what the command line
        asked stdout to show (memdoor.outputs chooses the formatter from it)."""
        chosen = sys.stdout if stream is None else stream
        self.view = view
        # Looked at once: the terminal a daemon started on stays its stdout.
        self.is_terminal = _is_terminal(chosen)
        # What Python makes of an fd 1 closed before it started (`>&-`).
        self.missing = "standard output is closed" if chosen is None else ""
        fd = None if chosen is None else _stream_fd(chosen)
        self.writer = None if fd is None else LineWriter(fd, limit, "memdoor-stdout")
        self._direct = chosen if fd is None else None
        self._direct_error: Optional[str] = None

    @property
    def available(self) -> bool:
        return not self.missing

    @property
    def error(self) -> Optional[str]:
        """Why stdout stopped taking records: its absence or the write error."""
        if self.writer is not None:
            return self.writer.error
        return self.missing or self._direct_error

    def write(self, line: str) -> PutOutcome:
        if self.writer is not None:
            return self.writer.put(line)
        if self._direct is None or self._direct_error is not None:
            return "failed"
        try:
            self._direct.write(line + "\n")
            self._direct.flush()
        except (OSError, ValueError) as exc:
            self._direct_error = str(exc)
            return "failed"
        return "queued"

    def close(self, timeout: float) -> None:
        if self.writer is not None:
            self.writer.close(timeout)


def stderr_notices() -> Optional[LineWriter]:
    """stderr through a writer thread, or None without one: under systemd stderr is
    the journal stream, and a stalled journald must not stall the daemon through it."""
    fd = None if sys.stderr is None else _stream_fd(sys.stderr)
    return None if fd is None else LineWriter(fd, NOTICE_LIMIT, "memdoor-stderr")


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
