"""Does an Elasticsearch mapping cover a JSON Schema exactly, and does a document fit it?

The schema is walked the way Elasticsearch sees a document: arrays are
transparent (a list of objects maps like one object), `$ref`s are followed,
`oneOf`/`anyOf` branches merge, null means absent, and an object whose keys are
free (`additionalProperties` with a schema) is a map. Each schema path must be
mapped with a type that accepts every value the schema allows, and each mapped
path must exist in the schema: a field the schema gains but the template lacks
is silently unsearchable under `dynamic: false`, so it has to fail a test.

Problems come back as a list of sentences, so a test can show them all and a
test of the checker can look for the one it provoked.
"""

from __future__ import annotations

import datetime
import fnmatch
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

INTEGER_TYPES = frozenset({"long", "integer", "short", "byte", "unsigned_long"})
NUMBER_TYPES = frozenset({"float", "double", "half_float", "scaled_float"})
DATE_TYPES = frozenset({"date", "date_nanos"})
ENUM_TYPES = frozenset({"keyword", "constant_keyword"})
# A string the schema does not pin down: any of these indexes it, ip for addresses.
FREE_STRING_TYPES = frozenset({"keyword", "text", "match_only_text", "wildcard", "ip"})
OBJECT_TYPES = frozenset({"object", "nested"})
LONG_RANGE = range(-(2**63), 2**63)
UNSIGNED_LONG_RANGE = range(0, 2**64)
# Elasticsearch refuses a keyword term over 32766 bytes, and with it the whole
# document; 8191 characters of at most 4 UTF-8 bytes each stay under that.
MAX_IGNORE_ABOVE = 8191


@dataclass
class SchemaField:
    """What the schema allows at one dotted path."""

    kind: str  # "leaf", "object" or "map"
    json_types: set[str] = field(default_factory=set)
    enum: bool = False
    date: bool = False


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def _json_type(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _leaf(node: Mapping[str, Any]) -> Optional[SchemaField]:
    if "const" in node or "enum" in node:
        values = [node["const"]] if "const" in node else node["enum"]
        types = {t for t in map(_json_type, values) if t is not None}
        return SchemaField("leaf", types, enum=True)
    declared = node.get("type", [])
    types = set(declared if isinstance(declared, list) else [declared])
    types -= {"null", "array", "object"}
    if not types:
        return None
    return SchemaField("leaf", types, date=node.get("format") == "date-time")


def _add(found: dict[str, SchemaField], path: str, new: SchemaField) -> None:
    old = found.get(path)
    if old is None:
        found[path] = new
    elif old.kind == new.kind:
        old.json_types |= new.json_types
        old.enum = old.enum and new.enum
        old.date = old.date and new.date
    else:
        raise ValueError(f"{path}: both {old.kind} and {new.kind} in the schema")


def _walk(
    node: Mapping[str, Any], root: Mapping[str, Any], path: str, found: dict[str, SchemaField]
) -> None:
    node = _resolve(node, root)
    for branch in (*node.get("oneOf", ()), *node.get("anyOf", ())):
        _walk(branch, root, path, found)
    declared = node.get("type", [])
    types = set(declared if isinstance(declared, list) else [declared])
    if "array" in types:
        _walk(node.get("items", {}), root, path, found)
    extra = node.get("additionalProperties")
    if isinstance(extra, Mapping) and "properties" not in node:
        value = _leaf(_resolve(extra, root))
        assert value is not None, f"{path}: a map of non-scalar values is not supported"
        _add(found, path, SchemaField("map", value.json_types, value.enum, value.date))
    elif "object" in types or "properties" in node:
        if path:
            _add(found, path, SchemaField("object"))
        for name, sub in node.get("properties", {}).items():
            _walk(sub, root, f"{path}.{name}" if path else name, found)
    leaf = _leaf(node)
    if leaf is not None:
        _add(found, path, leaf)


def schema_fields(schema: Mapping[str, Any]) -> dict[str, SchemaField]:
    """Every path the schema can produce, with what it allows there."""
    found: dict[str, SchemaField] = {}
    _walk(schema, schema, "", found)
    return found


def mapped_fields(mappings: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Every path a mapping defines (objects included), with its definition."""
    found: dict[str, Mapping[str, Any]] = {}

    def walk(properties: Mapping[str, Any], prefix: str) -> None:
        for name, definition in properties.items():
            path = f"{prefix}{name}"
            found[path] = definition
            walk(definition.get("properties", {}), f"{path}.")

    walk(mappings["properties"], "")
    return found


def field_type(definition: Mapping[str, Any]) -> str:
    return str(definition.get("type", "object"))


def allowed_types(wanted: SchemaField) -> frozenset[str]:
    """The Elasticsearch types that accept every value the schema allows."""
    allowed: Optional[frozenset[str]] = None
    for json_type in wanted.json_types:
        if json_type == "string":
            accepts = (
                DATE_TYPES if wanted.date else ENUM_TYPES if wanted.enum else FREE_STRING_TYPES
            )
        elif json_type == "integer":
            accepts = INTEGER_TYPES
        elif json_type == "number":
            accepts = NUMBER_TYPES
        else:
            accepts = frozenset({json_type})
        allowed = accepts if allowed is None else allowed & accepts
    return allowed or frozenset()


def _keyword_problems(path: str, definition: Mapping[str, Any]) -> list[str]:
    problems = []
    keywords = [(path, definition)] + [
        (f"{path} (multi-field {name})", sub)
        for name, sub in definition.get("fields", {}).items()
        if field_type(sub) == "keyword"
    ]
    for where, keyword in keywords:
        limit = keyword.get("ignore_above")
        if field_type(keyword) == "keyword" and (limit is None or limit > MAX_IGNORE_ABOVE):
            problems.append(
                f"{where}: a free string as keyword needs ignore_above <= {MAX_IGNORE_ABOVE}, "
                "or one long value rejects the whole record"
            )
    return problems


def _dynamic_template_for(
    path: str, dynamic_templates: list[Mapping[str, Any]]
) -> Optional[Mapping[str, Any]]:
    """The template Elasticsearch would pick for a new key under path: the first that matches."""
    probe = f"{path}.some_key"
    for entry in dynamic_templates:
        (template,) = entry.values()
        if set(template) - {"path_match", "mapping"}:
            continue
        patterns = template["path_match"]
        patterns = [patterns] if isinstance(patterns, str) else patterns
        if any(fnmatch.fnmatchcase(probe, pattern) for pattern in patterns):
            return template
    return None


def _map_problems(
    path: str,
    wanted: SchemaField,
    definition: Mapping[str, Any],
    dynamic_templates: list[Mapping[str, Any]],
) -> list[str]:
    kind = field_type(definition)
    if kind == "flattened":
        return []
    if kind != "object" or definition.get("dynamic") not in (True, "true"):
        return [f"{path}: a map with free keys in the schema, mapped as {kind} without dynamic"]
    template = _dynamic_template_for(path, dynamic_templates)
    if template is None:
        return [f"{path}: a dynamic map with no dynamic template: Elasticsearch would guess types"]
    value_type = field_type(template["mapping"])
    if value_type not in allowed_types(wanted):
        return [f"{path}.*: {sorted(wanted.json_types)} values mapped as {value_type}"]
    return []


def coverage_problems(schema: Mapping[str, Any], mappings: Mapping[str, Any]) -> list[str]:
    """Everything that keeps the mapping from covering exactly the schema."""
    wanted_fields = schema_fields(schema)
    mapped = mapped_fields(mappings)
    dynamic_templates = list(mappings.get("dynamic_templates", []))
    problems = []
    for path, wanted in sorted(wanted_fields.items()):
        definition = mapped.get(path)
        if definition is None:
            problems.append(f"{path}: in the schema, not mapped")
            continue
        kind = field_type(definition)
        if wanted.kind == "map":
            problems += _map_problems(path, wanted, definition, dynamic_templates)
        elif definition.get("dynamic") in (True, "true", "runtime"):
            problems.append(f"{path}: dynamic mapping under a field whose keys the schema fixes")
        elif wanted.kind == "object":
            if kind not in OBJECT_TYPES:
                problems.append(f"{path}: an object in the schema, mapped as {kind}")
        elif kind not in allowed_types(wanted):
            problems.append(
                f"{path}: {sorted(wanted.json_types)}{' enum' if wanted.enum else ''}"
                f"{' date-time' if wanted.date else ''} in the schema, mapped as {kind}"
            )
        elif kind == "keyword" and not wanted.enum:
            problems += _keyword_problems(path, definition)
    problems += [
        f"{path}: mapped, not in the schema" for path in mapped if path not in wanted_fields
    ]
    return problems


def _value_problem(path: str, value: Any, kind: str) -> Optional[str]:
    """Would Elasticsearch index this value under this type, as this value?"""
    json_type = _json_type(value)
    if kind == "boolean":
        fits = json_type == "boolean"
    elif kind in INTEGER_TYPES:
        valid = UNSIGNED_LONG_RANGE if kind == "unsigned_long" else LONG_RANGE
        fits = json_type == "integer" and value in valid
    elif kind in NUMBER_TYPES:
        fits = json_type in ("integer", "number")
    elif kind in DATE_TYPES:
        fits = json_type == "string" and _parses_as_date(value)
    elif kind == "ip":
        fits = json_type == "string" and _parses_as_ip(value)
    else:
        fits = json_type == "string"
    return None if fits else f"{path}: {value!r} does not fit {kind}"


def _parses_as_date(text: str) -> bool:
    try:
        datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _parses_as_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def document_problems(document: Mapping[str, Any], mappings: Mapping[str, Any]) -> list[str]:
    """Each value of a real document, checked against the type its path is mapped as."""
    mapped = mapped_fields(mappings)
    dynamic_templates = list(mappings.get("dynamic_templates", []))
    problems: list[str] = []

    def check(path: str, value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                check(path, item)
            return
        if value is None:
            return
        definition = mapped.get(path)
        if definition is None:
            problems.append(f"{path}: in a document, not mapped")
            return
        kind = field_type(definition)
        if not isinstance(value, Mapping):
            problem = _value_problem(path, value, kind)
            if problem:
                problems.append(problem)
            return
        if kind not in OBJECT_TYPES:
            problems.append(f"{path}: an object in a document, mapped as {kind}")
        elif definition.get("dynamic") in (True, "true"):
            template = _dynamic_template_for(path, dynamic_templates)
            if template is None:
                problems.append(f"{path}: a dynamic object with no dynamic template")
                return
            for key, item in value.items():
                problem = _value_problem(f"{path}.{key}", item, field_type(template["mapping"]))
                if problem:
                    problems.append(problem)
        else:
            for key, item in value.items():
                check(f"{path}.{key}", item)

    for key, value in document.items():
        check(key, value)
    return problems
