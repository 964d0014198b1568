"""Reading back what memdoor wrote about a hostile process: strictly, and to the byte."""

from __future__ import annotations

import json
import struct
import unicodedata
from typing import Any, Union

from memdoor.process_text import ESCAPED, EscapedText, to_bytes

# Characters a line must not carry to a reader: controls (the newline between
# lines aside), line and paragraph separators, bidirectional overrides, lone surrogates.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def breaks_or_drives(character: str) -> bool:
    category = unicodedata.category(character)
    return category in ("Cc", "Zl", "Zp", "Cs") or character in _BIDI_CONTROLS


def unsafe_characters(text: str) -> list[str]:
    """What in text, newlines aside, would break its lines or drive a terminal."""
    return [character for character in text if character != "\n" and breaks_or_drives(character)]


def strict_json_lines(data: bytes) -> list[dict[str, Any]]:
    """Each line decoded as strict UTF-8 and parsed as JSON: either raises on the first bad one."""
    assert data.endswith(b"\n"), data[-200:]
    return [json.loads(line.decode("utf-8")) for line in data.split(b"\n")[:-1]]


def text_bytes(owner: dict[str, Any], key: str) -> Union[bytes, list[bytes]]:
    """The bytes a process chose, read back from a record object as docs/records.md says to."""
    escaped = key in owner.get(ESCAPED, ())

    def one(text: str) -> bytes:
        return to_bytes(EscapedText(text)) if escaped else text.encode("utf-8")

    value = owner[key]
    return [one(item) for item in value] if isinstance(value, list) else one(value)


def is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_LENGTH = struct.Struct("<Q")


def journal_export_entries(export: bytes) -> list[list[tuple[str, bytes]]]:
    """`journalctl -o export` as each entry's (field, value) pairs, repeats kept.

    A field is NAME=VALUE\\n, or NAME\\n, a little-endian 64-bit length, the value
    and \\n when the value is not plain text; an empty line ends an entry.
    """
    entries: list[list[tuple[str, bytes]]] = []
    fields: list[tuple[str, bytes]] = []
    position = 0
    while position < len(export):
        end = export.index(b"\n", position)
        line = export[position:end]
        if not line:
            entries.append(fields)
            fields = []
            position = end + 1
            continue
        name, equals, value = line.partition(b"=")
        if equals:
            position = end + 1
        else:
            (length,) = _LENGTH.unpack_from(export, end + 1)
            start = end + 1 + _LENGTH.size
            value = export[start : start + length]
            assert export[start + length : start + length + 1] == b"\n"
            position = start + length + 1
        fields.append((name.decode("ascii"), value))
    if fields:
        entries.append(fields)
    return entries
