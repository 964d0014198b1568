"""The native-protocol encoding, checked byte for byte against the documented format."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.sinks.journal_protocol import (
    FieldValue,
    decode_entry,
    encode_entry,
    valid_field_name,
)


def test_plain_text_fields_use_key_equals_value() -> None:
    payload = encode_entry(
        {"MESSAGE": "snapshot taken", "PRIORITY": "4", "MEMDOOR_TARGET": "myapp"}
    )
    assert payload == b"MESSAGE=snapshot taken\nPRIORITY=4\nMEMDOOR_TARGET=myapp\n"


def test_value_with_newline_uses_length_prefixed_form() -> None:
    payload = encode_entry({"MEMDOOR_RECORD": '{\n "pid": 7\n}'})
    value = b'{\n "pid": 7\n}'
    assert payload == b"MEMDOOR_RECORD\n" + struct.pack("<Q", len(value)) + value + b"\n"


@pytest.mark.parametrize(
    "value",
    [b"nul\x00inside", b"\xff\xfe not utf-8", b"esc \x1b[31m", b"cr\r", b"del\x7f"],
    ids=["nul", "invalid-utf8", "escape", "carriage-return", "del"],
)
def test_value_that_is_not_safe_text_uses_binary_form(value: bytes) -> None:
    payload = encode_entry({"DATA": value})
    assert payload == b"DATA\n" + struct.pack("<Q", len(value)) + value + b"\n"


def test_utf8_and_tab_stay_in_text_form() -> None:
    assert encode_entry({"MESSAGE": "größe\t5 MiB"}) == "MESSAGE=größe\t5 MiB\n".encode()


def test_empty_value_is_kept() -> None:
    assert encode_entry({"EMPTY": "", "NEXT": "x"}) == b"EMPTY=\nNEXT=x\n"
    assert decode_entry(encode_entry({"EMPTY": b""})) == {"EMPTY": b""}


def test_text_read_with_surrogateescape_goes_back_to_its_bytes() -> None:
    path = b"/tmp/caf\xe9".decode("utf-8", "surrogateescape")
    assert decode_entry(encode_entry({"MEMDOOR_EXE": path})) == {"MEMDOOR_EXE": b"/tmp/caf\xe9"}


@pytest.mark.parametrize(
    "name",
    ["", "message", "_PID", "1ABC", "MEMDOOR-TARGET", "A" * 65, "MÉSSAGE", "A B"],
    ids=[
        "empty",
        "lowercase",
        "leading-underscore",
        "leading-digit",
        "dash",
        "65-chars",
        "non-ascii",
        "space",
    ],
)
def test_invalid_field_names_are_rejected(name: str) -> None:
    assert not valid_field_name(name)
    with pytest.raises(ValueError, match="invalid journal field name"):
        encode_entry({"MESSAGE": "ok", name: "x"})


@pytest.mark.parametrize("name", ["A", "MESSAGE", "A" * 64, "X_1", "MEMDOOR_RECORD", "Z9_"])
def test_valid_field_names_are_accepted(name: str) -> None:
    assert valid_field_name(name)


def test_empty_entry_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one field"):
        encode_entry({})


def test_round_trip_mixed_fields() -> None:
    fields: dict[str, FieldValue] = {
        "MESSAGE": "memdoor: myapp crossed 80%",
        "MEMDOOR_RECORD": '{"a": 1,\n"b": "x=y"}',
        "MEMDOOR_BLOB": b"\x00\x01\n\xff",
        "EQUALS": "a=b=c",
    }
    assert decode_entry(encode_entry(fields)) == {
        "MESSAGE": b"memdoor: myapp crossed 80%",
        "MEMDOOR_RECORD": b'{"a": 1,\n"b": "x=y"}',
        "MEMDOOR_BLOB": b"\x00\x01\n\xff",
        "EQUALS": b"a=b=c",
    }


@pytest.mark.parametrize(
    "payload",
    [
        b"MESSAGE=no newline",
        b"MESSAGE\n\x05\x00\x00",
        b"MESSAGE\n" + struct.pack("<Q", 10) + b"short\n",
        b"MESSAGE\n" + struct.pack("<Q", 2) + b"abc\n",
        b"lower=x\n",
        b"A=1\nA=2\n",
    ],
    ids=[
        "unterminated",
        "truncated-length",
        "short-value",
        "missing-newline",
        "bad-name",
        "repeated",
    ],
)
def test_decode_rejects_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(ParseError):
        decode_entry(payload)


_names = st.from_regex(r"\A[A-Z][A-Z0-9_]{0,63}\Z")
_values = st.one_of(st.text(), st.binary())


@given(st.dictionaries(_names, _values, min_size=1, max_size=8))
def test_round_trip_property(fields: dict[str, FieldValue]) -> None:
    expected = {
        name: value if isinstance(value, bytes) else value.encode("utf-8")
        for name, value in fields.items()
    }
    assert decode_entry(encode_entry(fields)) == expected
