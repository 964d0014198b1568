from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.procfs.stat import ProcStat, parse_stat
from tests.procfs.recorded import damaged, fuzz, prefixes, recorded_text, value_or_parse_error

SLEEP = ProcStat(pid=7340, comm="sleep", state="S", ppid=7338, start_ticks=109550)


def test_recorded_process() -> None:
    assert parse_stat(recorded_text("stat")) == SLEEP


def test_comm_with_spaces_and_parentheses() -> None:
    # Recorded after writing "my) proc (x" to /proc/self/comm.
    assert parse_stat(recorded_text("stat_comm_paren")) == ProcStat(
        pid=7344, comm="my) proc (x", state="R", ppid=7343, start_ticks=109583
    )


def test_kernel_thread() -> None:
    assert parse_stat(recorded_text("stat_kthread")) == ProcStat(
        pid=2, comm="kthreadd", state="S", ppid=0, start_ticks=23
    )


def test_empty_comm() -> None:
    text = recorded_text("stat").replace("(sleep)", "()")
    assert parse_stat(text).comm == ""


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "7340 sleep S 7338 7334",
        "(sleep) S 7338 7334 5237 0 -1 4194304 58 0 0 0 0 0 0 0 20 0 1 0 109550 2560000 0\n",
        "x (sleep) S 7338 7334 5237 0 -1 4194304 58 0 0 0 0 0 0 0 20 0 1 0 109550 2560000 0\n",
        "7340 (sleep) S abc 7334 5237 0 -1 4194304 58 0 0 0 0 0 0 0 20 0 1 0 109550 2560000 0\n",
        "7340 (sleep) S 7338 7334 5237 0 -1 4194304 58 0 0 0 0 0 0 0 20 0 1 0 1e5 2560000 0\n",
        "7340 (sleep) S 7338 7334 5237\n",
        "7340 (sleep S 7338 7334 5237 0 -1 4194304 58 0 0 0 0 0 0 0 20 0 1 0 109550 2560000\n",
        "7340 )sleep( S 7338 7334 5237 0 -1 4194304 58 0 0 0 0 0 0 0 20 0 1 0 109550 2560000\n",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_stat(text)


@pytest.mark.parametrize("name", ["stat", "stat_comm_paren", "stat_kthread"])
def test_every_cut_gives_parse_error_or_the_whole_truth(name: str) -> None:
    """A cut inside starttime must not pass for a shorter, wrong start time."""
    full = parse_stat(recorded_text(name))
    for text in prefixes(recorded_text(name)):
        assert value_or_parse_error(parse_stat, text) in (None, full), repr(text)


@fuzz
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    value_or_parse_error(parse_stat, text)


@fuzz
@given(damaged(recorded_text("stat_comm_paren")))
def test_damaged_recording(text: str) -> None:
    value_or_parse_error(parse_stat, text)
