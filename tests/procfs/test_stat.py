from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.procfs.stat import ProcStat, parse_stat
from tests.procfs.recorded import damaged, fuzz, prefixes, recorded_text, value_or_parse_error

SLEEP = ProcStat(
    pid=7340,
    comm="sleep",
    state="S",
    ppid=7338,
    start_ticks=109550,
    flags=0x400000,
    pending_signals=0,
)


def test_recorded_process() -> None:
    assert parse_stat(recorded_text("stat")) == SLEEP


def test_comm_with_spaces_and_parentheses() -> None:
    # Recorded after writing "my) proc (x" to /proc/self/comm.
    assert parse_stat(recorded_text("stat_comm_paren")) == ProcStat(
        pid=7344,
        comm="my) proc (x",
        state="R",
        ppid=7343,
        start_ticks=109583,
        flags=0x400040,
        pending_signals=0,
    )


def test_kernel_thread() -> None:
    assert parse_stat(recorded_text("stat_kthread")) == ProcStat(
        pid=2,
        comm="kthreadd",
        state="S",
        ppid=0,
        start_ticks=23,
        flags=0x208040,
        pending_signals=0,
    )


def test_live_process_has_not_exited() -> None:
    assert not SLEEP.exited


def with_field(text: str, number: int, value: str) -> str:
    """The recorded line with field number (1-based, as in proc(5)) replaced."""
    head, _, tail = text.rpartition(")")
    fields = tail.split()
    fields[number - 3] = value
    return f"{head}) {' '.join(fields)}\n"


@pytest.mark.parametrize(
    ("state", "flags", "stage"),
    [
        # Recorded on this kernel from a 3 GiB process after SIGKILL: state R,
        # PF_EXITING set for thousands of reads, then the zombie.
        ("R", 0x400044, "exiting"),
        ("D", 0x400044, "exiting"),
        ("Z", 0x400044, "zombie"),
        ("Z", 0x400040, "zombie"),
        ("X", 0x400044, "zombie"),
    ],
)
def test_exiting_and_zombie_tasks_have_exited(state: str, flags: int, stage: str) -> None:
    parsed = parse_stat(with_field(with_field(recorded_text("stat"), 3, state), 9, str(flags)))
    assert (parsed.state, parsed.flags) == (state, flags)
    assert parsed.exited
    assert parsed.exit_stage == stage


@pytest.mark.parametrize(
    ("pending", "kill_pending"), [("0", False), ("256", True), ("16640", True), ("16384", False)]
)
def test_a_pending_sigkill(pending: str, kill_pending: bool) -> None:
    """Field 31, the pending signals: bit 8 is SIGKILL (16640 = SIGKILL + SIGTERM)."""
    parsed = parse_stat(with_field(recorded_text("stat"), 31, pending))
    assert parsed.pending_signals == int(pending)
    assert parsed.kill_pending is kill_pending
    assert not parsed.exited


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
