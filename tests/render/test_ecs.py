"""Records of a real daemon run, rendered as ECS: every ECS field typed, nothing of ours loose."""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import jsonschema
import pytest

from memdoor.events import EVENTS, Event
from memdoor.render.ecs import ECS_VERSION, MOVED_KEYS, to_ecs
from tests.record_schema import validate_record
from tests.render.daemon_run import record_daemon_run
from tests.render.ecs_document_schema import (
    ECS_EXPECTED_TYPES,
    ECS_KINDS,
    ECS_OUTCOMES,
    ecs_document_schema,
    record_schema,
)

HOST = "web-3.example"
ECS_TOP_LEVEL = {"@timestamp", "message", "log", "ecs", "event", "host", "process"}


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    found = record_daemon_run(tmp_path_factory.mktemp("ecs"))
    for record in found:
        validate_record(record)
    return found


def one(records: list[dict[str, Any]], event: str, target: str) -> dict[str, Any]:
    matching = [r for r in records if r["event"] == event and r["target"] == target]
    assert matching, (event, target, [(r["event"], r["target"]) for r in records])
    return matching[0]


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def test_the_run_covers_the_events_the_renderer_must_handle(records) -> None:
    events = {r["event"] for r in records}
    assert {
        "daemon_started",
        "target_found",
        "target_waiting",
        "threshold_crossed",
        "config_reloaded",
        "oom_killed",
        "target_gone",
        "daemon_stopping",
    } <= events
    server = one(records, "threshold_crossed", "server")
    assert server["mappings"] and server["connections"]
    assert one(records, "oom_killed", "hog")["last_snapshot"] is not None


def test_every_document_matches_the_ecs_document_schema(records) -> None:
    """Every ECS field typed as ECS defines it, and no key the schema does not declare."""
    schema = ecs_document_schema(record_schema())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for record in records:
        validator.validate(to_ecs(record, HOST))


def test_every_record_has_the_core_ecs_fields(records) -> None:
    for record in records:
        document = to_ecs(record, HOST)
        assert document["@timestamp"] == record["timestamp"]
        assert parse_time(document["@timestamp"]).utcoffset() == datetime.timedelta(0)
        assert isinstance(document["message"], str) and document["message"]
        assert document["message"] == record["message"]
        assert document["log"] == {"level": record["level"]}
        assert document["ecs"] == {"version": ECS_VERSION}
        assert document["host"] == {"name": HOST}
        event = document["event"]
        assert event["action"] == record["event"]
        assert event["dataset"] == "memdoor.record" and event["module"] == "memdoor"
        assert event["code"] == EVENTS[Event(record["event"])].message_id
        assert event["kind"] in ECS_KINDS
        assert isinstance(event["category"], list) and isinstance(event["type"], list)
        for category in event["category"]:
            assert set(event["type"]) <= set(ECS_EXPECTED_TYPES[category]), (record["event"], event)
        assert event.get("outcome", "unknown") in ECS_OUTCOMES


def test_nothing_of_memdoors_is_outside_its_namespace_and_nothing_is_lost(records) -> None:
    for record in records:
        document = to_ecs(record, HOST)
        assert set(document) - {"memdoor"} <= ECS_TOP_LEVEL
        ours = document["memdoor"]
        assert not set(ours) & set(MOVED_KEYS)
        rebuilt = {
            "timestamp": document["@timestamp"],
            "level": document["log"]["level"],
            "event": document["event"]["action"],
            "message": document["message"],
            **ours,
        }
        assert rebuilt == record
        # Shipped as one JSON document, so it must survive a round trip unchanged.
        assert json.loads(json.dumps(document)) == document


def test_the_record_is_left_as_it_was(records) -> None:
    record = one(records, "oom_killed", "hog")
    before = copy.deepcopy(record)
    to_ecs(record, HOST)
    assert record == before


def test_process_fields_of_a_full_snapshot(records) -> None:
    record = one(records, "threshold_crossed", "server")
    identity = record["process"]
    process = to_ecs(record, HOST)["process"]
    assert process["pid"] == identity["pid"] == record["pid"]
    assert isinstance(process["pid"], int)
    assert process["name"] == identity["name"]
    assert process["executable"] == identity["exe"]
    assert process["args"] == identity["cmdline"] and len(identity["cmdline"]) > 1
    assert process["args_count"] == len(identity["cmdline"])
    assert process["command_line"] == " ".join(identity["cmdline"])
    assert process["parent"] == {"pid": identity["ppid"], "name": record["tree"][0]["name"]}
    assert record["tree"][0]["pid"] == identity["ppid"]
    assert process["start"] == identity["started_at"]
    parse_time(process["start"])
    assert "end" not in process


def test_an_oom_kill_ends_the_process_at_the_kernels_time(records) -> None:
    record = one(records, "oom_killed", "hog")
    document = to_ecs(record, HOST)
    assert document["event"]["kind"] == "alert" and document["event"]["type"] == ["end"]
    assert "kmsg" in record["kill"]["sources"]
    assert document["process"]["end"] == record["kill"]["killed_at"]
    assert parse_time(document["process"]["end"]) >= parse_time(document["process"]["start"])
    assert document["memdoor"]["last_snapshot"] == record["last_snapshot"]
    # The record itself has no tree; the parent's name comes from the kept snapshot's.
    assert "tree" not in record
    parent = record["last_snapshot"]["tree"][0]
    assert document["process"]["parent"] == {"pid": parent["pid"], "name": parent["name"]}


def test_records_without_a_process_section_still_name_the_pid(records) -> None:
    sampled = [r for r in records if r["pid"] is not None and "process" not in r]
    assert sampled, [r["event"] for r in records]
    for record in sampled:
        assert to_ecs(record, HOST)["process"] == {"pid": record["pid"]}


def test_daemon_wide_records_carry_no_process(records) -> None:
    for record in records:
        if record["pid"] is None:
            assert "process" not in to_ecs(record, HOST), record["event"]


def test_every_schema_event_is_categorized_within_ecs() -> None:
    assert set(EVENTS) == set(record_schema()["properties"]["event"]["enum"])
    for action, spec in EVENTS.items():
        categorization = spec.ecs
        assert categorization.kind in ECS_KINDS, action
        for category in categorization.category:
            assert set(categorization.type) <= set(ECS_EXPECTED_TYPES[category]), action
        assert categorization.outcome in (None, *ECS_OUTCOMES), action


def test_an_event_the_table_does_not_know_is_a_process_event_without_a_code() -> None:
    record = {
        "timestamp": "2026-11-24T19:30:18.905Z",
        "level": "info",
        "event": "from_a_newer_memdoor",
        "target": None,
        "pid": None,
        "schema_version": 1,
    }
    event = to_ecs(record, HOST)["event"]
    assert event["kind"] == "event"
    assert event["category"] == ["process"] and event["type"] == ["info"]
    assert event["action"] == "from_a_newer_memdoor"
    assert "code" not in event and "outcome" not in event
