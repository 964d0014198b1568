from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.procfs.statm import parse_statm_resident_pages
from tests.procfs.recorded import damaged, fuzz, prefixes, recorded_text, value_or_parse_error


def test_recorded_process() -> None:
    assert parse_statm_resident_pages(recorded_text("statm")) == 376


@pytest.mark.parametrize(
    "text", ["", "\n", "625", "625 abc 352 5 0 89 0\n", "625 -1 352\n", "625 \u00b2 352\n"]
)
def test_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_statm_resident_pages(text)


def test_every_cut_gives_parse_error_or_the_whole_truth() -> None:
    for text in prefixes(recorded_text("statm")):
        assert value_or_parse_error(parse_statm_resident_pages, text) in (None, 376), repr(text)


@fuzz
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    value_or_parse_error(parse_statm_resident_pages, text)


@fuzz
@given(damaged(recorded_text("statm")))
def test_damaged_recording(text: str) -> None:
    value_or_parse_error(parse_statm_resident_pages, text)
