"""The form of text a process chose: valid Unicode always, the exact bytes recoverable."""

from __future__ import annotations

import os
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.process_text import (
    ESCAPED,
    EscapedText,
    decode,
    escaped_keys,
    from_os,
    note_escaped,
    printable,
    splice,
    to_bytes,
    to_os,
)
from tests.procfs.recorded import fuzz


@pytest.mark.parametrize(
    "raw",
    [b"", b"/usr/bin/sleep", b"caf\xc3\xa9", b"back\\slash \\x2d", b"\x1b[2J\n", b"\xe2\x80\xae"],
)
def test_utf8_is_itself(raw: bytes) -> None:
    text = decode(raw)
    assert type(text) is str
    assert text == raw.decode("utf-8")


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        (b"caf\xe9", "caf\\xe9"),
        (b"\xff\xfe", "\\xff\\xfe"),
        # A backslash is doubled, so "\\x41" cannot pass for the byte 0x41.
        (b"a\\x41\xff", "a\\\\x41\\xff"),
        # What Python's surrogateescape would turn into a lone surrogate.
        (b"\xed\xa0\x80", "\\xed\\xa0\\x80"),
        # An overlong "/" and a sequence cut short.
        (b"\xc0\xaf", "\\xc0\\xaf"),
        (b"\xe2\x82", "\\xe2\\x82"),
        # The valid parts stay text, control characters included.
        (b"\xe9t\xc3\xa9\x1b", "\\xe9t\u00e9\x1b"),
    ],
)
def test_other_bytes_are_in_the_escaped_form(raw: bytes, escaped: str) -> None:
    text = decode(raw)
    assert isinstance(text, EscapedText)
    assert str(text) == escaped
    assert to_bytes(text) == raw


@fuzz
@given(st.binary())
def test_any_bytes_become_valid_text_that_gives_them_back(raw: bytes) -> None:
    text = decode(raw)
    text.encode("utf-8")
    assert to_bytes(text) == raw
    assert os.fsencode(to_os(text)) == raw
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        assert isinstance(text, EscapedText)
    else:
        assert type(text) is str


@fuzz
@given(st.binary(), st.binary())
def test_different_bytes_never_compare_equal(a: bytes, b: bytes) -> None:
    assert (decode(a) == decode(b)) == (a == b)


def test_an_escaped_path_never_equals_the_plain_text_spelled_alike() -> None:
    """A binary at /opt/a<0xff> is not the configured "/opt/a\\xff" (backslash, x, f, f)."""
    spelled_alike = "/opt/a\\xff"
    assert decode(b"/opt/a\xff") != spelled_alike
    assert spelled_alike != decode(b"/opt/a\xff")
    assert decode(b"/opt/a\xff") not in (spelled_alike, os.path.realpath(spelled_alike))
    assert decode(b"/opt/a\xff") == decode(b"/opt/a\xff")
    assert len({decode(b"/opt/a\xff"), spelled_alike}) == 2


def test_text_read_with_surrogateescape_is_decoded_from_its_bytes() -> None:
    assert from_os(b"/tmp/caf\xe9".decode("utf-8", "surrogateescape")) == decode(b"/tmp/caf\xe9")
    assert type(from_os("/tmp/plain")) is str


def test_a_lone_surrogate_from_anywhere_still_becomes_valid_text() -> None:
    text = from_os("odd \ud800 \udcff")
    assert isinstance(text, EscapedText)
    text.encode("utf-8")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain /usr/bin/app --flag", "plain /usr/bin/app --flag"),
        ("a\nERROR: PID 1 does not match", "a\\x0aERROR: PID 1 does not match"),
        ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
        ("bell\x07 del\x7f tab\t cr\r", "bell\\x07 del\\x7f tab\\x09 cr\\x0d"),
        ("c1 \u0085 \u009b2J", "c1 \\u0085 \\u009b2J"),
        ("sep \u2028 \u2029 rlo \u202e", "sep \\u2028 \\u2029 rlo \\u202e"),
        ("caf\u00e9 \u65e5\u672c", "caf\u00e9 \u65e5\u672c"),
        ("kept \\x2d backslash", "kept \\x2d backslash"),
    ],
)
def test_printable_escapes_what_breaks_a_line_or_drives_a_terminal(text: str, shown: str) -> None:
    assert printable(text) == shown


def _breaks_or_drives(character: str) -> bool:
    return unicodedata.category(character) in ("Cc", "Zl", "Zp", "Cs") or character in (
        "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    )


@fuzz
@given(st.text(st.characters(exclude_categories=())))
def test_printable_output_is_one_inert_line(text: str) -> None:
    shown = printable(text)
    assert not any(_breaks_or_drives(character) for character in shown)
    assert len(shown.splitlines()) <= 1
    shown.encode("utf-8")
    assert printable(shown) == shown


def test_escaped_keys_name_the_values_and_lists_in_the_escaped_form() -> None:
    argv = ["plain", "back\\slash", decode(b"\xff")]
    data = {"name": decode(b"caf\xe9"), "exe": "/usr/bin/plain", "cmdline": argv, "pid": 7}
    assert escaped_keys(data) == ["name", "cmdline"]

    noted = note_escaped(data)

    assert noted[ESCAPED] == ["name", "cmdline"]
    # A listed list is wholly in the escaped form: each item gives back its bytes.
    assert [str(item) for item in noted["cmdline"]] == ["plain", "back\\\\slash", "\\xff"]
    assert [to_bytes(EscapedText(item)) for item in noted["cmdline"]] == [
        b"plain",
        b"back\\slash",
        b"\xff",
    ]
    assert argv == ["plain", "back\\slash", decode(b"\xff")]
    assert noted["exe"] == "/usr/bin/plain"
    assert ESCAPED not in note_escaped({"name": "plain", "cmdline": ["a", "b\\x41"]})


@pytest.mark.parametrize(
    ("raw", "limit", "kept"),
    [
        (b"\xe9\xe9\xe9", 5, b"\xe9"),
        (b"\xe9\xe9\xe9", 8, b"\xe9\xe9"),
        (b"a\\b\xff", 2, b"a"),
        (b"a\\b\xff", 3, b"a\\"),
        (b"plain", 3, b"pla"),
    ],
)
def test_cut_never_splits_an_escape_sequence(raw: bytes, limit: int, kept: bytes) -> None:
    text = decode(raw)
    assert to_bytes(splice(text, limit, len(text), "")) == kept


@fuzz
@given(st.binary(), st.integers(0, 100))
def test_cut_keeps_a_prefix_of_the_bytes_within_the_limit(raw: bytes, limit: int) -> None:
    text = decode(raw)
    kept = splice(text, limit, len(text), "")
    assert len(kept) <= limit
    assert raw.startswith(to_bytes(kept))
    if type(text) is str:
        assert kept == text[:limit]
    assert kept == decode(to_bytes(kept))
