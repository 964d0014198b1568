"""Bytes a watched process controls, turned into text that is safe to write anywhere.

A process chooses its argv, its name (comm), the names of the files it maps and
of the cgroup it sits in, and the kernel hands them over as bytes, not text. A
Latin-1 file name is not UTF-8; decoded with surrogateescape it becomes a str
that no strict UTF-8 encoder accepts, so the record that carries it cannot be
written and the watcher that rendered it dies. Every such value is therefore
decoded here, once, where it is read, and nothing after that holds anything
but valid Unicode.

The form, chosen so that nothing an operator needs to recognise a process is
lost:

- Bytes that are valid UTF-8 are that text, unchanged (backslashes included, so
  systemd's ``\\x2d`` in a unit's cgroup stays as systemd wrote it).
- Any other bytes are written in the *escaped form*: each byte that is not part
  of a valid UTF-8 sequence is ``\\xNN`` (two lowercase hex digits, as ``ps``
  and systemd write them), each backslash is doubled, and the valid parts are
  their text. The value is an :class:`EscapedText`, and a record object
  holding one lists its key in ``escaped``, so a reader knows the value is in
  that form and can turn it back into the exact bytes (:func:`to_bytes`). In
  a list (argv) listed there, every item is in the escaped form, so a reader
  need not guess which ones are.

Control characters are kept as they are in this form: JSON escapes them, and
the journal's native protocol carries any value as one field. Where text is
read as lines (the journal's MESSAGE, the seed command's report), it goes
through :func:`printable`, which escapes them.
"""

from __future__ import annotations

import os
import re
from typing import Any

# The key of a record object that lists which of its values are EscapedText.
ESCAPED = "escaped"

_ESCAPE_SEQUENCE = re.compile(r"\\(?:x([0-9a-f]{2})|\\)")
# What must not reach a terminal or a one-line field as is: C0 controls (newline,
# carriage return, escape, ...), DEL and C1 controls (U+0085 is a line break to
# some readers, U+009B a CSI to some terminals), the Unicode line and paragraph
# separators, the bidirectional overrides that can make a line read backwards,
# and lone surrogates, which no UTF-8 encoder takes.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)


class EscapedText(str):
    """Text in the escaped form: the bytes it stands for are not valid UTF-8.

    It never equals a plain str, even one spelled the same: the plain
    "/opt/a\\\\xff" stands for a backslash, an x and two letters, this one for a
    0xff byte, and telling two executables apart is what comparing them is for.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EscapedText) and str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = str.__hash__


def decode(raw: bytes) -> str:
    """raw as text: itself when it is UTF-8, else an EscapedText."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return EscapedText(raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace"))


def from_os(text: str) -> str:
    """Text Python decoded with surrogateescape (os.readlink, a /proc file read as text).

    Any lone surrogate counts as undecodable: one that surrogateescape did not
    make (a str never read from the OS) is written as its UTF-8-style bytes.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "surrogatepass")
        return decode(raw)
    return text


def to_bytes(text: str) -> bytes:
    """The bytes text stands for: the inverse of decode."""
    if not isinstance(text, EscapedText):
        return text.encode("utf-8")
    raw = bytearray()
    position = 0
    for match in _ESCAPE_SEQUENCE.finditer(text):
        raw += text[position : match.start()].encode("utf-8")
        hex_digits = match.group(1)
        raw += bytes([int(hex_digits, 16)]) if hex_digits else b"\\"
        position = match.end()
    raw += text[position:].encode("utf-8")
    return bytes(raw)


def splice(text: str, head_end: int, tail_start: int, middle: str) -> str:
    """text[:head_end] + middle + text[tail_start:], in text's own form: the cut points
    move off the inside of escape sequences, whose pieces would read as other bytes,
    and the result is escaped only if still needed."""
    if head_end >= tail_start and not middle:
        return text
    if not isinstance(text, EscapedText):
        return text[:head_end] + middle + text[tail_start:]
    # From the start: a backslash begins a sequence only at the right alignment.
    for match in _ESCAPE_SEQUENCE.finditer(text):
        if match.start() < head_end < match.end():
            head_end = match.start()
        if match.start() < tail_start < match.end():
            tail_start = match.end()
    return decode(to_bytes(EscapedText(text[:head_end] + middle + text[tail_start:])))


def to_os(text: str) -> str:
    """The path text stands for, as Python's os functions take it (for I/O only)."""
    return os.fsdecode(to_bytes(text))


def _escape_character(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """text on one line and inert on a terminal: each character that could break the
    line or steer the terminal is written as \\xNN (C0, DEL) or \\uNNNN (the rest).

    Backslashes are left alone, so applying it twice changes nothing; the JSON,
    not this line, is the exact record.
    """
    return _UNPRINTABLE.sub(_escape_character, text)


def _holds_escaped(value: Any) -> bool:
    if isinstance(value, EscapedText):
        return True
    return isinstance(value, list) and any(isinstance(item, EscapedText) for item in value)


def escaped_keys(data: dict[str, Any]) -> list[str]:
    """The keys of data whose text (or any text in whose list) is in the escaped form."""
    return [key for key, value in data.items() if _holds_escaped(value)]


def _escaped_form(text: str) -> str:
    return text if isinstance(text, EscapedText) else text.replace("\\", "\\\\")


def note_escaped(data: dict[str, Any]) -> dict[str, Any]:
    """data, with ``escaped`` listing its escaped keys when it has any, and each list
    among them written wholly in the escaped form (a new list: the caller's stays)."""
    keys = escaped_keys(data)
    for key in keys:
        if isinstance(data[key], list):
            data[key] = [_escaped_form(item) for item in data[key]]
    if keys:
        data[ESCAPED] = keys
    return data
