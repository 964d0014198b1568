"""Values written back as TOML text, for two readers of the same file.

Problems quote a bad value as the operator typed it, and `memdoor check-config`
writes the effective configuration that must load back to the same Config; one
writer serves both so that a value reads the same in either place.
"""

from __future__ import annotations

import math
from typing import Union

# How much of a value a problem quotes: enough to recognise it, short enough that
# one problem stays one line.
SHOW_LIMIT = 60

_STRING_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def shorten(text: str, limit: int) -> str:
    """text cut to at most limit characters, the cut marked with '...'."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def toml_string(text: str) -> str:
    """A TOML basic string: control characters must be escaped, or the file will not parse."""
    escaped = []
    for char in text:
        if char in _STRING_ESCAPES:
            escaped.append(_STRING_ESCAPES[char])
        elif char < " " or char == "\x7f":
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def toml_scalar(value: Union[bool, int, float, str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, int):
        return _integer(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def _integer(value: int) -> str:
    """Decimal, or hex for an integer of thousands of digits: TOML's hex integers have
    no length limit, and Python refuses to write such a number in decimal (since 3.11,
    and in security releases of older versions)."""
    try:
        return repr(value)
    except ValueError:
        return hex(value)


def toml_value(value: Union[bool, int, float, str, tuple[str, ...]]) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(toml_string(item) for item in value) + "]"
    return toml_scalar(value)


def show(value: object) -> str:
    """A bad value as the operator typed it in TOML, cut short so one problem stays one line."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        text = "[" + ", ".join(show(item) for item in value) + "]"
    elif isinstance(value, (bool, int, float, str)):
        text = toml_scalar(value)
    else:
        text = str(value)  # TOML dates and times
    return shorten(text, SHOW_LIMIT)
