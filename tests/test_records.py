"""The record pipeline: key order, timestamps, schema, journal fields, human lines."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import pytest

from memdoor.collect.identity import ProcessIdentity
from memdoor.config import ResolvedTarget
from memdoor.emitter import ProcessRecords, TargetRecords
from memdoor.events import EVENTS, Event
from memdoor.messages import cgroup_usage_line, human_kb, usage_line
from memdoor.records import LEADING_KEYS, SCHEMA_VERSION, RecordLog, build_logger
from memdoor.sinks.journal_fields import RECORD_FIELD, UNKNOWN_EVENT_ID, journal_fields
from memdoor.sinks.journal_protocol import valid_field_name
from memdoor.snapshot import Snapshot
from tests.record_schema import validate_record


class Collect:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.records: list[dict[str, Any]] = []

    def emit(self, line: str, record: dict[str, Any]) -> None:
        self.lines.append(line)
        self.records.append(record)


def test_records_start_with_the_leading_keys_in_order() -> None:
    sink = Collect()
    log = build_logger(sink)
    log.warning("back_below", pid=42, target="app", message="m", usage_percent=3.5, rss_kb=10)
    record = json.loads(sink.lines[0])
    assert list(record)[: len(LEADING_KEYS)] == list(LEADING_KEYS)
    assert record["level"] == "warning" and record["schema_version"] == SCHEMA_VERSION
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    assert record == sink.records[0]
    validate_record(record)


def test_daemon_wide_records_carry_null_target_and_pid() -> None:
    sink = Collect()
    build_logger(sink).info("daemon_stopping", message="bye")
    assert sink.records[0]["target"] is None and sink.records[0]["pid"] is None
    validate_record(sink.records[0])


def test_schema_rejects_an_unknown_field() -> None:
    sink = Collect()
    build_logger(sink).info("daemon_stopping", message="bye", surprise=1)
    with pytest.raises(Exception, match="surprise"):
        validate_record(sink.records[0])


def test_journal_fields_are_valid_names_and_carry_the_line() -> None:
    sink = Collect()
    build_logger(sink).warning(
        "snapshot",
        target="db",
        pid=7,
        message="db pid 7 RSS 1.0 GiB = 53% >= 50%",
        threshold_percent=50,
        memory={"rss_kb": 1048576, "usage_percent": 53.2, "mem_total_kb": 2000000},
    )
    fields = journal_fields(sink.records[0], sink.lines[0])
    assert all(valid_field_name(name) for name in fields)
    assert fields[RECORD_FIELD] == sink.lines[0]
    assert fields["PRIORITY"] == "4"
    assert fields["MESSAGE"] == "db pid 7 RSS 1.0 GiB = 53% >= 50%"
    assert fields["MEMDOOR_EVENT"] == "snapshot"
    assert fields["MEMDOOR_TARGET"] == "db"
    assert fields["MEMDOOR_PID"] == "7"
    assert fields["MEMDOOR_RSS_KB"] == "1048576"
    assert fields["MEMDOOR_USAGE_PERCENT"] == "53.2"
    assert fields["MEMDOOR_THRESHOLD_PERCENT"] == "50"


def test_daemon_records_have_no_target_fields_in_the_journal() -> None:
    sink = Collect()
    build_logger(sink).error("sink_failed", message="x", sink="stdout", detail="EPIPE")
    fields = journal_fields(sink.records[0], sink.lines[0])
    assert "MEMDOOR_TARGET" not in fields and "MEMDOOR_PID" not in fields
    assert fields["PRIORITY"] == "3"


def test_journal_message_id_comes_from_the_event_table() -> None:
    sink = Collect()
    build_logger(sink).info("daemon_stopping", message="bye")
    fields = journal_fields(sink.records[0], sink.lines[0])
    assert fields["MESSAGE_ID"] == EVENTS[Event.DAEMON_STOPPING].message_id


def test_an_event_the_table_does_not_know_gets_the_unknown_message_id() -> None:
    record = {"event": "from_a_newer_memdoor", "level": "info", "message": "m"}
    assert journal_fields(record, "{}")["MESSAGE_ID"] == UNKNOWN_EVENT_ID


@pytest.mark.parametrize(
    ("kb", "text"),
    [(0, "0 KiB"), (1023, "1023 KiB"), (1024, "1.0 MiB"), (3565158, "3.4 GiB")],
)
def test_human_sizes(kb: int, text: str) -> None:
    assert human_kb(kb) == text


def test_usage_line_matches_the_documented_example() -> None:
    assert usage_line("myapp", 8893, 3565158, 53.2, 50) == "myapp pid 8893 RSS 3.4 GiB = 53% >= 50%"


def test_usage_line_never_rounds_across_the_threshold() -> None:
    assert usage_line("a", 1, 1024, 49.6, 50) == "a pid 1 RSS 1.0 MiB = 49.6% < 50%"
    assert usage_line("a", 1, 1024, 1.54, 1) == "a pid 1 RSS 1.0 MiB = 1.5% >= 1%"
    assert usage_line("a", 1, None, None, 5) == "a pid 1 RSS unavailable (threshold 5%)"


def test_every_event_has_a_stable_distinct_message_id() -> None:
    schema = json.loads(
        resources.files("memdoor").joinpath("schema/record.schema.json").read_text()
    )
    events = schema["properties"]["event"]["enum"]
    assert sorted(EVENTS) == sorted(events)
    message_ids = [spec.message_id for spec in EVENTS.values()]
    assert len(set(message_ids)) == len(EVENTS)
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in message_ids)


def test_the_schemas_event_enum_is_the_event_table_in_order() -> None:
    schema = json.loads(
        resources.files("memdoor").joinpath("schema/record.schema.json").read_text()
    )
    assert schema["properties"]["event"]["enum"] == [event.value for event in Event]
    assert list(EVENTS) == list(Event)


def test_a_kernel_log_lost_record_matches_the_schema() -> None:
    sink = Collect()
    build_logger(sink).warning(
        Event.KERNEL_LOG_LOST.value,
        message="kernel log: 2 overruns, 1 unparsable record",
        overwritten=2,
        unparsable=1,
        detail="records were overwritten",
    )
    record = sink.records[0]
    assert record["target"] is None and record["pid"] is None
    validate_record(record)
    with pytest.raises(Exception, match="-1"):
        validate_record({**record, "overwritten": -1})


def test_cgroup_usage_line_never_rounds_across_the_threshold() -> None:
    assert (
        cgroup_usage_line("a", 1, "/app.service", 102 * 1024, 256 * 1024, 40)
        == "a pid 1 cgroup /app.service 102.0 MiB of 256.0 MiB = 39.8% < 40%"
    )
    assert (
        cgroup_usage_line("a", 1, "/x", 200 * 1024, 256 * 1024, 50)
        == "a pid 1 cgroup /x 200.0 MiB of 256.0 MiB = 78% >= 50%"
    )


@pytest.mark.parametrize(
    "usage",
    [
        usage_line("myapp", 8893, 3565158, 53.2, 50),
        usage_line("myapp", 8893, None, None, 50),
        cgroup_usage_line("myapp", 8893, "/app.service", 200 * 1024, 256 * 1024, 50),
    ],
)
def test_each_measured_event_says_what_it_is(usage: str) -> None:
    """The watcher hands the same figures to the crossing, a later snapshot, a sample and
    the return below: the MESSAGE must still tell them apart, figures first."""
    sink = Collect()
    target = ResolvedTarget(
        name="myapp", pid=8893, pidfile=None, exe=None, count=None, sections=("memory",)
    )
    identity = ProcessIdentity(8893, 1, "myapp", 1, None, "/usr/bin/myapp", False, ["myapp"])
    records = ProcessRecords(TargetRecords(RecordLog(sink), target, False), identity)
    snapshot = Snapshot(8893, 1.7e9, identity)
    records.full_snapshot(True, snapshot, usage, "system")
    records.full_snapshot(False, snapshot, usage, "system")
    records.sample(usage, 53.2, "system", snapshot)
    records.back_below(usage, 53.2, "system")
    by_event = {record["event"]: record["message"] for record in sink.records}
    assert list(by_event) == ["threshold_crossed", "snapshot", "sample", "back_below"]
    assert len(set(by_event.values())) == 4, by_event
    assert all(message.startswith(usage + ": ") for message in by_event.values())
    assert "crossed" in by_event["threshold_crossed"]
    assert "full snapshot" in by_event["snapshot"] and "crossed" not in by_event["snapshot"]
    assert by_event["sample"].endswith("sample")
    assert "below" in by_event["back_below"]
