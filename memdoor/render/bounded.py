"""A snapshot rendered for a record, at the detail the target asks for, within a byte budget.

detail "summary" (the default) keeps every record under RECORD_BUDGET bytes:
the size at which Docker and CRI runtimes split a container's stdout line,
far under Loki's 256 KB line limit, and cheap in the journal. detail "full"
keeps the complete lists; such records travel whole through the journal's
native protocol but may exceed shippers' limits.
"""

from __future__ import annotations

from typing import Any, Optional

from memdoor.collect.identity import ProcessIdentity
from memdoor.process_text import cut
from memdoor.render.snapshot_dict import process_dict, snapshot_dict
from memdoor.render.summary import summarize_connections, summarize_mappings
from memdoor.snapshot import Snapshot
from memdoor.vocabulary import Detail, compact_json

RECORD_BUDGET = 16 * 1024
# Room for what the record adds around the snapshot: timestamp, level, event,
# target, pid, message and the event's own few fields.
ENVELOPE_ALLOWANCE = 1024
# How many mapping groups and sockets to list, tried in turn until the record fits.
LISTING_STEPS = (20, 10, 5, 2, 0)
MAX_CMDLINE_CHARS = 2048


def _size(data: dict[str, Any]) -> int:
    return len(compact_json(data).encode())


def _summary(snapshot: Snapshot, cmdline: Optional[list[str]], listed: int) -> dict[str, Any]:
    data = snapshot_dict(snapshot, cmdline, with_lists=False)
    if snapshot.mappings is not None:
        data["mappings_summary"] = summarize_mappings(snapshot.mappings, listed)
    if snapshot.connections is not None:
        data["connections_summary"] = summarize_connections(snapshot.connections, listed)
    return data


def bounded_cmdline(cmdline: list[str]) -> tuple[list[str], bool]:
    """Keep whole arguments while they fit; a java classpath alone can be 100 KB."""
    kept: list[str] = []
    used = 0
    for arg in cmdline:
        if used + len(arg) > MAX_CMDLINE_CHARS:
            return kept or [cut(arg, MAX_CMDLINE_CHARS)], True
        kept.append(arg)
        used += len(arg)
    return kept, False


def process_fields(
    identity: ProcessIdentity, detail: Detail, cmdline: Optional[list[str]] = None
) -> dict[str, Any]:
    """The process section of a record, its command line bounded unless detail is full."""
    if detail == "full":
        return process_dict(identity, cmdline)
    kept, truncated = bounded_cmdline(identity.cmdline if cmdline is None else cmdline)
    data = process_dict(identity, kept)
    if truncated:
        data["cmdline_truncated"] = True
    return data


def snapshot_fields(
    snapshot: Snapshot,
    detail: Detail,
    cmdline: Optional[list[str]] = None,
    budget: int = RECORD_BUDGET - ENVELOPE_ALLOWANCE,
) -> dict[str, Any]:
    """The snapshot's part of a record. Summaries shrink their listings until they
    fit the budget: the whole record's, less what the record carries besides."""
    if detail == "full":
        return snapshot_dict(snapshot, cmdline)
    for listed in LISTING_STEPS:
        data = _summary(snapshot, cmdline, listed)
        if snapshot.identity is not None:
            data["process"] = process_fields(snapshot.identity, detail, cmdline)
        if _size(data) <= budget:
            break
    return data
