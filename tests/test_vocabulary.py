from __future__ import annotations

import json

import pytest

from memdoor.vocabulary import compact_json, decimal


@pytest.mark.parametrize(
    ("text", "value"), [("0", 0), ("7", 7), ("0042", 42), ("1" * 30, int("1" * 30))]
)
def test_ascii_digits(text: str, value: int) -> None:
    assert decimal(text) == value


# '²' and '٣' pass str.isdigit() and break int(); the rest int() would take.
@pytest.mark.parametrize(
    "text", ["", "²", "9²", "٣", " 7", "7 ", "+7", "-7", "7_000", "0x7", "7.0"]
)
def test_anything_else_is_none(text: str) -> None:
    assert decimal(text) is None


def test_thousands_of_digits_are_damage_not_a_traceback() -> None:
    assert decimal("7" * 5000) is None


def test_compact_json_writes_text_as_utf8() -> None:
    assert compact_json({"name": "caf\u00e9", "n": 1}) == '{"name":"caf\u00e9","n":1}'


def test_compact_json_is_always_utf8_even_with_a_lone_surrogate() -> None:
    """A config path given in argv that is not UTF-8 must not cost the record."""
    record = {"config": "/etc/memdoor/caf\udce9.toml", "name": "caf\u00e9"}
    line = compact_json(record)
    line.encode("utf-8")
    assert json.loads(line) == record
