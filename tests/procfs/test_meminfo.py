from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.procfs.meminfo import MemInfo, parse_meminfo
from tests.procfs.recorded import damaged, fuzz, prefixes, recorded_text, value_or_parse_error

RECORDED = MemInfo(total_kb=24683656, available_kb=24395196)


def test_recorded() -> None:
    assert parse_meminfo(recorded_text("meminfo")) == RECORDED


def test_kernel_before_3_14_has_no_mem_available() -> None:
    assert parse_meminfo(recorded_text("meminfo_pre314")) == MemInfo(24683656, None)


def test_garbage_lines_are_ignored() -> None:
    text = "garbage\n" + recorded_text("meminfo") + "Odd: x kB\n:\n"
    assert parse_meminfo(text) == RECORDED


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "MemFree:        24436256 kB\n",
        "MemTotal:              0 kB\n",
        "MemTotal:            abc kB\n",
        "MemTotal:\n",
        "MemTotal:         \u00b2\u00b3 kB\n",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_meminfo(text)


def test_every_cut_gives_parse_error_or_only_true_fields() -> None:
    for text in prefixes(recorded_text("meminfo")):
        info = value_or_parse_error(parse_meminfo, text)
        if info is not None:
            assert info.total_kb == RECORDED.total_kb, repr(text[-40:])
            assert info.available_kb in (None, RECORDED.available_kb), repr(text[-40:])


@fuzz
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    value_or_parse_error(parse_meminfo, text)


@fuzz
@given(damaged(recorded_text("meminfo")))
def test_damaged_recording(text: str) -> None:
    value_or_parse_error(parse_meminfo, text)
