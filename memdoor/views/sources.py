"""Records read back: JSON lines (a file, stdin) or journal entries (`journalctl -o json`).

A line that is not a memdoor record (damage, another program's output, an
entry whose MEMDOOR_RECORD holds an ECS document) is counted, not fatal: the
records around it still tell their story, and the count is said at the end.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from memdoor.views.text import parse_time

# Matches on one field are OR'ed by journalctl, on different fields AND'ed.
JOURNAL_IDENTIFIER = "SYSLOG_IDENTIFIER=memdoor"
RECORD_FIELD = "MEMDOOR_RECORD"


def journalctl_command(
    targets: Sequence[str],
    events: Sequence[str],
    since: Optional[str],
    until: Optional[str],
    directory: Optional[str],
) -> list[str]:
    """journalctl printing memdoor's entries as JSON, only the record field, oldest first.

    --all: without it journalctl -o json shows fields over 4096 bytes as null,
    and a snapshot is larger. --since and --until are passed as given, so they
    take every form journalctl takes.
    """
    argv = ["journalctl", "--output=json", "--all", "--no-pager", "--quiet"]
    argv.append(f"--output-fields={RECORD_FIELD}")
    if directory is not None:
        argv.append(f"--directory={directory}")
    if since is not None:
        argv.append(f"--since={since}")
    if until is not None:
        argv.append(f"--until={until}")
    argv += ["--", JOURNAL_IDENTIFIER]
    argv += [f"MEMDOOR_TARGET={target}" for target in targets]
    argv += [f"MEMDOOR_EVENT={event}" for event in events]
    return argv


def as_record(value: Any) -> Optional[dict[str, Any]]:
    """value when it has a memdoor record's shape (an event name and a time), else None."""
    shaped = isinstance(value, dict) and isinstance(value.get("event"), str)
    return value if shaped and isinstance(value.get("timestamp"), str) else None


def _field_text(value: Any) -> Optional[str]:
    """A journal field as journalctl -o json writes it: a string, bytes as a list of
    numbers (not UTF-8, or unprintable), or a list of those when the field repeats."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(b, int) for b in value):
        if all(0 <= b < 256 for b in value):
            return bytes(value).decode("utf-8", errors="replace")
        return None
    if isinstance(value, list) and value:
        return _field_text(value[0])
    return None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


class RecordReader:
    """Turns lines into records, counting those that are not."""

    def __init__(self) -> None:
        self.skipped = 0

    def _accept(self, value: Any) -> Optional[dict[str, Any]]:
        record = as_record(value)
        if record is None:
            self.skipped += 1
        return record

    def from_json_lines(self, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Records written one per line (memdoor's stdout); blank lines are not counted."""
        for line in lines:
            if line.strip():
                record = self._accept(_loads(line))
                if record is not None:
                    yield record

    def from_journal_json(self, lines: Iterable[str]) -> Iterator[dict[str, Any]]:
        """Records from `journalctl -o json` lines: each entry's MEMDOOR_RECORD."""
        for line in lines:
            if not line.strip():
                continue
            entry = _loads(line)
            text = _field_text(entry.get(RECORD_FIELD)) if isinstance(entry, dict) else None
            record = self._accept(None if text is None else _loads(text))
            if record is not None:
                yield record


@dataclass(frozen=True)
class RecordFilter:
    """Which records to keep: any of the targets and events (all when empty), in [since, until]."""

    targets: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()
    since: Optional[float] = None
    until: Optional[float] = None

    def matches(self, record: Mapping[str, Any]) -> bool:
        if self.targets and record.get("target") not in self.targets:
            return False
        if self.events and record.get("event") not in self.events:
            return False
        if self.since is None and self.until is None:
            return True
        at = parse_time(record.get("timestamp"))
        if at is None:
            return False
        return (self.since is None or at >= self.since) and (self.until is None or at <= self.until)
