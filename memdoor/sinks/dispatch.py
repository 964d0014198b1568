"""Fan one rendered record out to every sink, keeping the daemon alive when one fails.

Neither sink ever waits for its reader: stdout queues lines for a writer
thread and journald sends without blocking. What a sink cannot take is
dropped and counted, and the next record that sink delivers carries the count
(`dropped_records`), so a gap in the stream is visible in the stream itself.

A sink that fails or starts dropping is reported once per episode, on stderr
and as a `sink_failed` record through the other sinks. journald's episode ends
with the next entry it accepts (journald restarts); stdout's when its queue
has emptied, so a slow reader gives one report per stall rather than one per
record. A write error on stdout (a closed pipe, a full disk) ends it for good:
a closed pipe does not reopen.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional

from memdoor.sinks.journal_fields import journal_fields
from memdoor.sinks.journald import JournaldSender
from memdoor.sinks.line_writer import LineWriter
from memdoor.sinks.stdout import StdoutSink
from memdoor.vocabulary import compact_json

FailureReporter = Callable[[str, str], None]
# A record in another shape than memdoor's own line (an ECS document), per sink.
Formatter = Callable[[Mapping[str, Any]], str]

DROPPED_FIELD = "dropped_records"
STDOUT_BEHIND = "standard output is not being read; records are dropped until it catches up"
JOURNALD_BUSY = "journald is not reading; records are being dropped"


@dataclass
class Delivery:
    """What one sink did not deliver: since its last delivered record, and in all."""

    undelivered: int = 0
    dropped: int = 0


class Dispatcher:
    def __init__(
        self,
        stdout: Optional[StdoutSink],
        journald: Optional[JournaldSender],
        formatters: Optional[dict[str, Formatter]] = None,
        stderr: Optional[LineWriter] = None,
    ) -> None:
        """stdout: an unavailable one (no fd 1) counts as absent. stderr: where the
        one-line failure notices go without blocking; None writes them directly."""
        self.stdout = stdout if stdout is not None and stdout.available else None
        self.journald = journald
        # Sinks absent here write the record as rendered. The journal's indexed
        # fields stay memdoor's whatever the format.
        self.formatters: dict[str, Formatter] = formatters or {}
        self.stderr = stderr
        self.records = 0
        self.delivery = {"stdout": Delivery(), "journald": Delivery()}
        self.failing: set[str] = set()
        self.on_failure: Optional[FailureReporter] = None
        # The sink whose failure is being reported: its own sink_failed skips it.
        self._reporting: Optional[str] = None
        if self.stdout is not None and self.stdout.writer is not None:
            self.stdout.writer.on_error = lambda detail: self._failed("stdout", detail)

    def follow(self, previous: Dispatcher) -> None:
        """Take over the running totals of the dispatcher this one replaces on reload,
        and the failure state of each sink object both use."""
        self.records = previous.records
        self.delivery = previous.delivery
        kept = {
            "stdout": self.stdout is previous.stdout,
            "journald": self.journald is previous.journald,
        }
        self.failing = {sink for sink in previous.failing if kept[sink]}

    def emit(self, line: str, record: dict[str, Any]) -> None:
        self.records += 1
        rendered: dict[tuple[Optional[Formatter], int], str] = {(None, 0): line}

        def text_for(sink: str, shown: Mapping[str, Any]) -> str:
            """Render each shape at most once per record, and only if a sink wants it."""
            formatter = self.formatters.get(sink)
            key = (formatter, self.delivery[sink].undelivered)
            if key not in rendered:
                rendered[key] = compact_json(shown) if formatter is None else formatter(shown)
            return rendered[key]

        stdout = self.stdout
        if stdout is not None and self._reporting != "stdout" and stdout.error is None:
            caught_up = stdout.writer is not None and stdout.writer.idle
            outcome = stdout.write(text_for("stdout", self._shown(record, "stdout")))
            if outcome == "queued":
                self._delivered("stdout", episode_over=caught_up)
            elif outcome == "dropped":
                self._undelivered("stdout", STDOUT_BEHIND)
            else:
                self._failed("stdout", stdout.error or "standard output failed")
        if self.journald is not None and self._reporting != "journald":
            shown = self._shown(record, "journald")
            sent = self.journald.send(journal_fields(shown, text_for("journald", shown)))
            if sent.status in ("sent", "sent_via_memfd"):
                self._delivered("journald", episode_over=True)
            elif sent.status == "dropped_busy":
                self._undelivered("journald", JOURNALD_BUSY)
            else:
                self._undelivered("journald", sent.detail)

    def notice(self, text: str) -> None:
        """One line for the operator on stderr, if there is one; never waits for it."""
        if self.stderr is not None:
            self.stderr.put(f"memdoor: {text}")
            return
        # If stderr is gone too, the records are the remaining channel. (print
        # with file=None would write to stdout, into the records.)
        if sys.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                print(f"memdoor: {text}", file=sys.stderr, flush=True)

    def _shown(self, record: dict[str, Any], sink: str) -> Mapping[str, Any]:
        """The record as this sink writes it: with the count of what it dropped before."""
        undelivered = self.delivery[sink].undelivered
        return {**record, DROPPED_FIELD: undelivered} if undelivered else record

    def _delivered(self, sink: str, episode_over: bool) -> None:
        self.delivery[sink].undelivered = 0
        if episode_over:
            self.failing.discard(sink)

    def _undelivered(self, sink: str, detail: str) -> None:
        self.delivery[sink].undelivered += 1
        self.delivery[sink].dropped += 1
        self._failed(sink, detail)

    def _failed(self, sink: str, detail: str) -> None:
        if sink in self.failing:
            return
        self.failing.add(sink)
        self.notice(f"sink {sink} failed: {detail}")
        if self.on_failure is not None:
            reporting, self._reporting = self._reporting, sink
            try:
                self.on_failure(sink, detail)
            finally:
                self._reporting = reporting
