"""The Elasticsearch index templates map exactly what memdoor ships, with fitting types.

Checked two ways: against the schemas (every path the record schema can produce,
and nothing else) and against the records of a real daemon run (every value fits
the type its path is mapped as: addresses parse as IPs, times as dates, inodes
within range). The checker is tested too: a field added to a copy of the schema
must be reported.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from memdoor.render.ecs import to_ecs
from tests.packaging.mapping_coverage import (
    coverage_problems,
    document_problems,
    field_type,
    mapped_fields,
)
from tests.render.daemon_run import record_daemon_run
from tests.render.ecs_document_schema import ecs_document_schema, record_schema

ELASTIC = Path(__file__).resolve().parents[2] / "packaging" / "elastic"
HOST = "web-3.example"
# What every shipping recipe adds to a memdoor-format record: the time data
# streams require (the record's own timestamp, copied) and the host it came from.
ENVELOPE = {
    "@timestamp": {"type": "string", "format": "date-time"},
    "host": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"name": {"type": "string"}},
    },
}
# Elasticsearch's default index.mapping.total_fields.limit; past it the template
# is refused when the first backing index is created.
TOTAL_FIELDS_LIMIT = 1000


def load_template(name: str) -> dict[str, Any]:
    template: dict[str, Any] = json.loads((ELASTIC / name).read_text())
    return template


def shipped_schema(record: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(record)
    schema["properties"].update(ENVELOPE)
    return schema


@pytest.fixture(scope="module")
def memdoor_template() -> dict[str, Any]:
    return load_template("memdoor-index-template.json")


@pytest.fixture(scope="module")
def ecs_template() -> dict[str, Any]:
    return load_template("memdoor-ecs-index-template.json")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return record_daemon_run(tmp_path_factory.mktemp("elastic"))


def test_the_memdoor_template_covers_the_record_schema_exactly(memdoor_template) -> None:
    mappings = memdoor_template["template"]["mappings"]
    assert coverage_problems(shipped_schema(record_schema()), mappings) == []


def test_the_ecs_template_covers_the_ecs_document_schema_exactly(ecs_template) -> None:
    mappings = ecs_template["template"]["mappings"]
    assert coverage_problems(ecs_document_schema(record_schema()), mappings) == []


def test_the_ecs_templates_memdoor_part_is_the_memdoor_templates_record_part(
    memdoor_template, ecs_template
) -> None:
    """One mapping of memdoor's figures, so a query means the same in both formats."""
    ours = memdoor_template["template"]["mappings"]["properties"]
    theirs = ecs_template["template"]["mappings"]["properties"]["memdoor"]["properties"]
    assert theirs == {k: v for k, v in ours.items() if k in theirs}
    assert set(ours) - set(theirs) == {
        "@timestamp",
        "host",
        "timestamp",
        "level",
        "event",
        "message",
    }


@pytest.mark.parametrize(
    ("name", "pattern", "field"),
    [
        ("memdoor-index-template.json", "memdoor-*", "timestamp"),
        ("memdoor-ecs-index-template.json", "memdoor-ecs*", "memdoor.pid"),
    ],
)
def test_templates_are_data_streams_that_keep_unknown_fields_visible(
    name: str, pattern: str, field: str
) -> None:
    template = load_template(name)
    assert template["index_patterns"] == [pattern]
    assert template["data_stream"] == {}
    mappings = template["template"]["mappings"]
    # Data streams need @timestamp as a date; unmapped fields stay in _source.
    assert mappings["properties"]["@timestamp"] == {"type": "date"}
    assert mappings["dynamic"] is False
    assert template["template"]["settings"]["index.mapping.ignore_malformed"] is True
    assert field in mapped_fields(mappings)
    assert len(mapped_fields(mappings)) < TOTAL_FIELDS_LIMIT


def test_the_ecs_template_outranks_the_memdoor_template_on_its_own_indices() -> None:
    memdoor = load_template("memdoor-index-template.json")
    ecs = load_template("memdoor-ecs-index-template.json")
    assert ecs["priority"] > memdoor["priority"]


def test_only_the_short_bounded_lists_are_nested(memdoor_template) -> None:
    """nested makes per-item queries right but costs a hidden document per item;
    the full lists can hold tens of thousands, past index.mapping.nested_objects.limit."""
    mapped = mapped_fields(memdoor_template["template"]["mappings"])
    nested = sorted(p for p, d in mapped.items() if field_type(d) == "nested")
    assert nested == [
        "connections_summary.listed",
        "last_snapshot.connections_summary.listed",
        "last_snapshot.mappings_summary.groups",
        "mappings_summary.groups",
    ]


def test_real_records_fit_the_memdoor_template(memdoor_template, records) -> None:
    mappings = memdoor_template["template"]["mappings"]
    for record in records:
        shipped = {**record, "@timestamp": record["timestamp"], "host": {"name": HOST}}
        assert document_problems(shipped, mappings) == [], record["event"]


def test_real_records_as_ecs_fit_the_ecs_template(ecs_template, records) -> None:
    mappings = ecs_template["template"]["mappings"]
    for record in records:
        assert document_problems(to_ecs(record, HOST), mappings) == [], record["event"]


def test_the_real_run_exercised_the_typed_fields(records) -> None:
    """The document checks above only prove something if these values were there."""
    full = next(r for r in records if r["event"] == "threshold_crossed" and r["target"] == "server")
    assert {c["remote_address"] for c in full["connections"]} - {"0.0.0.0", "::"}
    assert full["mappings"]
    killed = next(r for r in records if r["event"] == "oom_killed")
    last = killed["last_snapshot"]
    assert killed["kill"]["killed_at"] and last["cgroup"]["oom_counters"]
    assert last["connections_summary"]["by_state"] and last["mappings_summary"]["groups"]


def test_a_field_the_schema_gains_is_reported(memdoor_template) -> None:
    mappings = memdoor_template["template"]["mappings"]
    schema = shipped_schema(record_schema())
    schema["properties"]["surprise"] = {"type": "integer"}
    schema["$defs"]["memory"]["properties"]["hugetlb_kb"] = {"type": ["integer", "null"]}
    assert coverage_problems(schema, mappings) == [
        "last_snapshot.memory.hugetlb_kb: in the schema, not mapped",
        "memory.hugetlb_kb: in the schema, not mapped",
        "surprise: in the schema, not mapped",
    ]


def test_a_field_the_ecs_renderer_gains_is_reported(ecs_template) -> None:
    mappings = ecs_template["template"]["mappings"]
    schema = ecs_document_schema(record_schema())
    schema["properties"]["process"]["properties"]["title"] = {"type": "string"}
    assert coverage_problems(schema, mappings) == ["process.title: in the schema, not mapped"]


def test_a_mapping_the_schema_lacks_is_reported(memdoor_template) -> None:
    mappings = copy.deepcopy(memdoor_template["template"]["mappings"])
    mappings["properties"]["memory"]["properties"]["leftover_kb"] = {"type": "long"}
    assert coverage_problems(shipped_schema(record_schema()), mappings) == [
        "memory.leftover_kb: mapped, not in the schema"
    ]


@pytest.mark.parametrize(
    ("path", "definition", "problem"),
    [
        ("rss_kb", {"type": "keyword"}, "rss_kb: ['integer'] in the schema, mapped as keyword"),
        ("usage_percent", {"type": "long"}, "usage_percent: ['number'] in the schema"),
        ("taken_at", {"type": "keyword"}, "taken_at: ['string'] date-time in the schema"),
        ("level", {"type": "text"}, "level: ['string'] enum in the schema, mapped as text"),
        ("process", {"type": "keyword"}, "process: an object in the schema, mapped as keyword"),
        ("file", {"type": "keyword"}, "file: a free string as keyword needs ignore_above"),
        ("tree", {"type": "object", "dynamic": True}, "tree: dynamic mapping under a field"),
    ],
)
def test_a_wrong_type_is_reported(memdoor_template, path: str, definition, problem: str) -> None:
    mappings = copy.deepcopy(memdoor_template["template"]["mappings"])
    mappings["properties"][path] = definition
    problems = coverage_problems(shipped_schema(record_schema()), mappings)
    assert any(p.startswith(problem) for p in problems), problems


def test_a_map_without_a_dynamic_template_is_reported(memdoor_template) -> None:
    mappings = copy.deepcopy(memdoor_template["template"]["mappings"])
    mappings["dynamic_templates"] = [
        t for t in mappings["dynamic_templates"] if "oom_counters" not in json.dumps(t)
    ]
    problems = coverage_problems(shipped_schema(record_schema()), mappings)
    assert problems == [
        "cgroup.oom_counters: a dynamic map with no dynamic template: "
        "Elasticsearch would guess types",
        "last_snapshot.cgroup.oom_counters: a dynamic map with no dynamic template: "
        "Elasticsearch would guess types",
    ]


def test_a_value_that_does_not_fit_is_reported(memdoor_template, records) -> None:
    mappings = memdoor_template["template"]["mappings"]
    record = copy.deepcopy(
        next(r for r in records if r["event"] == "threshold_crossed" and r["target"] == "server")
    )
    record["connections"][0]["remote_address"] = "not-an-address"
    record["mappings"][0]["inode"] = 2**64
    assert document_problems(record, mappings) == [
        "mappings.inode: 18446744073709551616 does not fit unsigned_long",
        "connections.remote_address: 'not-an-address' does not fit ip",
    ]
