from __future__ import annotations

import pytest

from memdoor.vocabulary import decimal


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
