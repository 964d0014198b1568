"""Validate records against the JSON Schema the package ships."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    text = resources.files("memdoor").joinpath("schema/record.schema.json").read_text()
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate_record(record: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError naming the first field that breaks the schema."""
    _validator().validate(record)
