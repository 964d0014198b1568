"""journald's native protocol: one datagram payload per entry, built and read without I/O.

journald silently drops a field whose name it does not accept and silently
truncates a text value at its first newline, so both rules are enforced here,
where a mistake is a ``ValueError`` in a test rather than a missing field in
the journal of a machine that has just been OOM-killed.

Format: each field is ``NAME=VALUE\\n``, or, for a value that may contain a
newline, ``NAME\\n`` followed by the value's length as a little-endian uint64,
the value, and ``\\n``. A field name has 1-64 characters of ``A-Z 0-9 _`` and
starts with a letter (a leading ``_`` is reserved for fields journald adds).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from typing import Union

from memdoor.procfs.errors import ParseError

FieldValue = Union[str, bytes]

_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_LENGTH = struct.Struct("<Q")
# Text journalctl shows as-is: no control characters except tab. Anything else
# (newlines, NULs, escape sequences, invalid UTF-8) goes in the binary form,
# which journald stores byte for byte.
_UNSAFE_TEXT_BYTE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def valid_field_name(name: str) -> bool:
    return _FIELD_NAME.fullmatch(name) is not None


def _value_bytes(value: FieldValue) -> bytes:
    if isinstance(value, bytes):
        return value
    # surrogateescape turns text read with read_text() back into the original bytes.
    return value.encode("utf-8", "surrogateescape")


def _is_safe_text(value: bytes) -> bool:
    if _UNSAFE_TEXT_BYTE.search(value):
        return False
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_entry(fields: Mapping[str, FieldValue]) -> bytes:
    """Build the datagram payload for one entry.

    Raises ValueError for an invalid field name or an empty entry: journald
    would drop either without telling anyone.
    """
    if not fields:
        raise ValueError("a journal entry needs at least one field")
    parts: list[bytes] = []
    for name, value in fields.items():
        if not valid_field_name(name):
            raise ValueError(
                f"invalid journal field name {name!r}: journald would drop it "
                "(need 1-64 of A-Z 0-9 _, starting with a letter)"
            )
        raw = _value_bytes(value)
        key = name.encode("ascii")
        if _is_safe_text(raw):
            parts.append(key + b"=" + raw + b"\n")
        else:
            parts.append(key + b"\n" + _LENGTH.pack(len(raw)) + raw + b"\n")
    return b"".join(parts)


def decode_entry(payload: bytes) -> dict[str, bytes]:
    """Read a payload the way journald does; tests use it to see what was sent.

    Raises ParseError on anything journald would reject or silently drop, and
    on a repeated field (journald keeps both values, a dict cannot).
    """
    fields: dict[str, bytes] = {}
    pos = 0
    while pos < len(payload):
        line_end = payload.find(b"\n", pos)
        if line_end < 0:
            raise ParseError(f"journal entry: field at offset {pos} has no terminating newline")
        equals = payload.find(b"=", pos, line_end)
        if equals >= 0:
            raw_name = payload[pos:equals]
            value = payload[equals + 1 : line_end]
            pos = line_end + 1
        else:
            raw_name = payload[pos:line_end]
            value_start = line_end + 1 + _LENGTH.size
            if value_start > len(payload):
                raise ParseError(f"journal entry: binary field at offset {pos} lacks its length")
            (length,) = _LENGTH.unpack_from(payload, line_end + 1)
            value_end = value_start + length
            if payload[value_end : value_end + 1] != b"\n":
                raise ParseError(
                    f"journal entry: binary field at offset {pos} is not {length} bytes + newline"
                )
            value = payload[value_start:value_end]
            pos = value_end + 1
        name = raw_name.decode("ascii", "replace")
        if not valid_field_name(name):
            raise ParseError(f"journal entry: invalid field name {raw_name[:80]!r}")
        if name in fields:
            raise ParseError(f"journal entry: field {name} appears twice")
        fields[name] = value
    return fields
