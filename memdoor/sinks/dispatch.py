"""Fan one rendered record out to every sink, keeping the daemon alive when one fails.

A sink that fails (stdout a closed pipe, the journal socket gone) is reported
once, through the sinks still working and on stderr, and the others go on. The
journald sink keeps trying, since journald restarts; stdout does not, since a
closed pipe does not reopen.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from typing import Any, Callable, Optional

from memdoor.sinks.journal_fields import journal_fields
from memdoor.sinks.journald import JournaldSender
from memdoor.sinks.stdout import StdoutSink

FailureReporter = Callable[[str, str], None]
# A record in another shape than memdoor's own line (an ECS document), per sink.
Formatter = Callable[[Mapping[str, Any]], str]


class Dispatcher:
    def __init__(
        self,
        stdout: Optional[StdoutSink],
        journald: Optional[JournaldSender],
        formatters: Optional[dict[str, Formatter]] = None,
    ) -> None:
        self.stdout = stdout
        self.journald = journald
        # Sinks absent here write the record as rendered. The journal's indexed
        # fields stay memdoor's whatever the format.
        self.formatters: dict[str, Formatter] = formatters or {}
        self.records = 0
        self.failing: set[str] = set()
        self.on_failure: Optional[FailureReporter] = None

    @property
    def sink_names(self) -> list[str]:
        return [s for s, on in (("stdout", self.stdout), ("journald", self.journald)) if on]

    def emit(self, line: str, record: dict[str, Any]) -> None:
        self.records += 1
        rendered: dict[Formatter, str] = {}

        def line_for(sink: str) -> str:
            """Render another format at most once per record, and only if a sink wants it."""
            formatter = self.formatters.get(sink)
            if formatter is None:
                return line
            if formatter not in rendered:
                rendered[formatter] = formatter(record)
            return rendered[formatter]

        if self.stdout is not None and "stdout" not in self.failing:
            try:
                self.stdout.write(line_for("stdout"))
            except (OSError, ValueError) as exc:
                # ValueError: write to a closed file object.
                self._failed("stdout", str(exc))
        if self.journald is not None:
            outcome = self.journald.send(journal_fields(record, line_for("journald")))
            if outcome.status in ("sent", "sent_via_memfd"):
                self.failing.discard("journald")
            elif outcome.status == "dropped_busy":
                self._failed("journald", "journald is not reading; records are being dropped")
            else:
                self._failed("journald", outcome.detail)

    def _failed(self, sink: str, detail: str) -> None:
        if sink in self.failing:
            return
        self.failing.add(sink)
        # If stderr is gone too, the record below is the remaining channel.
        with contextlib.suppress(OSError, ValueError):
            print(f"memdoor: sink {sink} failed: {detail}", file=sys.stderr, flush=True)
        if self.on_failure is not None:
            self.on_failure(sink, detail)
