"""A record as native journal fields, so `journalctl MEMDOOR_TARGET=x` works.

Only small, filterable facts become their own fields; the whole record travels
once, as JSON, in MEMDOOR_RECORD. Field names follow journald's rules (A-Z,
0-9, _; invalid ones are silently dropped by journald).

MESSAGE is the line `journalctl` prints and terminals show, and the record's
message quotes names a process chose: its control characters are escaped
(memdoor.process_text.printable) so it stays one inert line. MEMDOOR_RECORD
keeps the exact text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memdoor.events import event_spec
from memdoor.process_text import printable

SYSLOG_IDENTIFIER = "memdoor"
# Only reached by a record whose event has no ID yet; a test keeps that from shipping.
UNKNOWN_EVENT_ID = "0" * 32
RECORD_FIELD = "MEMDOOR_RECORD"

# syslog(3) priorities, which journald stores as PRIORITY.
PRIORITIES = {"critical": 2, "error": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}


def _figure(record: Mapping[str, Any], section: str, key: str) -> Any:
    value = record.get(section)
    return value.get(key) if isinstance(value, Mapping) else None


def _owner_fields(record: Mapping[str, Any]) -> dict[str, Any]:
    """Whose the process is, so `journalctl MEMDOOR_UNIT=nginx.service` finds its records and
    MEMDOOR_INVOCATION_ID joins them to the unit's own entries (_SYSTEMD_INVOCATION_ID)."""
    owner = record.get("owner")
    if not isinstance(owner, Mapping):
        return {}
    return {
        "MEMDOOR_UNIT": owner.get("unit"),
        "MEMDOOR_USER_UNIT": owner.get("user_unit"),
        "MEMDOOR_INVOCATION_ID": owner.get("invocation_id"),
        "MEMDOOR_CONTAINER_ID": _figure(owner, "container", "id"),
        "MEMDOOR_POD_UID": _figure(owner, "pod", "uid"),
    }


def _message_id(event: str) -> str:
    spec = event_spec(event)
    return spec.message_id if spec is not None else UNKNOWN_EVENT_ID


def journal_fields(record: Mapping[str, Any], line: str) -> dict[str, str]:
    fields = {
        "MESSAGE": printable(str(record.get("message") or record.get("event"))),
        "PRIORITY": str(PRIORITIES.get(str(record.get("level")), 6)),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
        "MEMDOOR_EVENT": str(record.get("event")),
        "MESSAGE_ID": _message_id(str(record.get("event"))),
        "MEMDOOR_SCHEMA_VERSION": str(record.get("schema_version")),
        RECORD_FIELD: line,
    }
    optional = {
        "MEMDOOR_TARGET": record.get("target"),
        "MEMDOOR_PID": record.get("pid"),
        "MEMDOOR_RSS_KB": _figure(record, "memory", "rss_kb"),
        "MEMDOOR_USAGE_PERCENT": _figure(record, "memory", "usage_percent"),
        "MEMDOOR_THRESHOLD_PERCENT": record.get("threshold_percent"),
        "MEMDOOR_DROPPED_RECORDS": record.get("dropped_records"),
        **_owner_fields(record),
    }
    fields.update({key: str(value) for key, value in optional.items() if value is not None})
    return fields
