"""What an ECS document from memdoor may contain, as a JSON Schema built on the record schema.

The ECS fields are spelled out here from ECS 9.4.0 (generated/ecs/ecs_flat.yml in
the elastic/ecs repository); `memdoor.*` is the record schema less the keys that
moved to ECS fields. Both the renderer's tests and the ECS index template's
coverage test hold to it, so a field the renderer adds must be declared here
and then mapped in the template.
"""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

from memdoor.render.ecs import DATASET, ECS_VERSION, MODULE, MOVED_KEYS, NAMESPACE

# event.kind values a data source may set: "signal" and "pipeline_error" are
# reserved for Elastic's own use.
ECS_KINDS = ["alert", "asset", "enrichment", "event", "metric", "state"]
# The event.type values ECS expects with each category memdoor uses.
ECS_EXPECTED_TYPES = {
    "process": ["access", "change", "end", "info", "start"],
    "configuration": ["access", "change", "creation", "deletion", "info"],
}
ECS_OUTCOMES = ["success", "failure", "unknown"]
LEVELS = ["debug", "info", "notice", "warning", "error", "critical"]

_STRING = {"type": "string"}
_DATE = {"type": "string", "format": "date-time"}
_INTEGER = {"type": "integer"}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


def record_schema() -> dict[str, Any]:
    text = resources.files("memdoor").joinpath("schema/record.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def ecs_document_schema(record: dict[str, Any]) -> dict[str, Any]:
    """The ECS document schema for a record schema (pass a modified copy to test the checker)."""
    events = record["properties"]["event"]["enum"]
    types = sorted({t for expected in ECS_EXPECTED_TYPES.values() for t in expected})
    ours = {
        key: copy.deepcopy(value)
        for key, value in record.items()
        if key not in ("$schema", "$id", "$defs", "title", "description")
    }
    ours["properties"] = {k: v for k, v in ours["properties"].items() if k not in MOVED_KEYS}
    ours["required"] = [k for k in ours["required"] if k not in MOVED_KEYS]
    document = _object(
        {
            "@timestamp": _DATE,
            "message": _STRING,
            "log": _object({"level": {"enum": LEVELS}}, ("level",)),
            "ecs": _object({"version": {"const": ECS_VERSION}}, ("version",)),
            "event": _object(
                {
                    "kind": {"enum": ECS_KINDS},
                    "category": {"type": "array", "items": {"enum": list(ECS_EXPECTED_TYPES)}},
                    "type": {"type": "array", "items": {"enum": types}},
                    "action": {"enum": events},
                    "dataset": {"const": DATASET},
                    "module": {"const": MODULE},
                    "code": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "outcome": {"enum": ECS_OUTCOMES},
                },
                ("kind", "category", "type", "action", "dataset", "module"),
            ),
            "host": _object({"name": _STRING}, ("name",)),
            "process": _object(
                {
                    "pid": _INTEGER,
                    "name": _STRING,
                    "executable": _STRING,
                    "args": {"type": "array", "items": _STRING},
                    "args_count": _INTEGER,
                    "command_line": _STRING,
                    "start": _DATE,
                    "end": _DATE,
                    "parent": _object({"pid": _INTEGER, "name": _STRING}, ("pid",)),
                },
                ("pid",),
            ),
            "container": _object({"id": _STRING, "runtime": _STRING}, ("id",)),
            "orchestrator": _object(
                {
                    "type": {"const": "kubernetes"},
                    "resource": _object({"type": {"const": "pod"}, "id": _STRING}, ("type", "id")),
                },
                ("type", "resource"),
            ),
            NAMESPACE: ours,
        },
        ("@timestamp", "message", "log", "ecs", "event", "host", NAMESPACE),
    )
    document["$defs"] = copy.deepcopy(record["$defs"])
    return document
