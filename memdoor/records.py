"""Records: structlog's processor chain from a log call to one rendered JSON line.

Every record the daemon writes passes through the same plain-callable
processors: timestamp (RFC 3339, UTC, milliseconds), level, schema version,
a fixed key order, and JSON rendering. The last processor hands the line and
the dict to the sink dispatcher, which is structlog's "logger".
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any, Protocol

import structlog

from memdoor.events import Event, Level
from memdoor.vocabulary import compact_json, rfc3339

SCHEMA_VERSION = 1
# The fields every record starts with, in this order, so a human reading the
# journal or a terminal sees what and who before the bulk of a snapshot.
LEADING_KEYS = ("timestamp", "level", "event", "target", "pid", "schema_version", "message")

EventDict = MutableMapping[str, Any]


class RecordSink(Protocol):
    def emit(self, line: str, record: dict[str, Any]) -> None: ...


def add_timestamp(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    event_dict.setdefault("timestamp", rfc3339(time.time()))
    return event_dict


def add_schema_version(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    event_dict["schema_version"] = SCHEMA_VERSION
    return event_dict


def order_keys(_logger: Any, _method: str, event_dict: EventDict) -> dict[str, Any]:
    """Leading keys first; target and pid always present (null for daemon-wide events)."""
    event_dict.setdefault("target", None)
    event_dict.setdefault("pid", None)
    ordered = {key: event_dict[key] for key in LEADING_KEYS if key in event_dict}
    ordered.update((k, v) for k, v in event_dict.items() if k not in ordered)
    return ordered


def render_line(
    _logger: Any, _method: str, event_dict: EventDict
) -> tuple[tuple[str], dict[str, Any]]:
    """Render once; the stdout sink writes the line, journald stores the same bytes."""
    line = compact_json(event_dict)
    return (line,), {"record": event_dict}


class _DispatchLogger:
    """structlog's logger slot: every level method hands the rendered record to the sink."""

    def __init__(self, sink: RecordSink) -> None:
        self._sink = sink

    def _emit(self, line: str, record: dict[str, Any]) -> None:
        self._sink.emit(line, record)

    info = notice = warning = error = critical = msg = _emit


def build_logger(sink: RecordSink) -> Any:
    """A bound logger whose calls become records: log.warning(event, target=..., ...)."""
    return structlog.wrap_logger(
        _DispatchLogger(sink),
        processors=[
            structlog.processors.add_log_level,
            add_timestamp,
            add_schema_version,
            order_keys,
            render_line,
        ],
        # The generic BoundLogger passes any method name through, so "notice"
        # (syslog's level between info and warning) works like the others.
        wrapper_class=structlog.BoundLogger,
        cache_logger_on_first_use=True,
    )


class RecordLog:
    """Where the emitter's records enter the processor chain (memdoor.emitter's writer)."""

    def __init__(self, sink: RecordSink) -> None:
        self._logger = build_logger(sink)

    def write(self, level: Level, event: Event, fields: dict[str, Any]) -> None:
        getattr(self._logger, level)(event.value, **fields)
