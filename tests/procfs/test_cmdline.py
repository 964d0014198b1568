from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from memdoor.process_text import EscapedText, to_bytes
from memdoor.procfs.cmdline import parse_cmdline
from tests.procfs.recorded import fuzz, recorded_bytes


def test_recorded_process() -> None:
    assert parse_cmdline(recorded_bytes("cmdline")) == ["/usr/bin/sleep", "1000"]


def test_kernel_thread_or_zombie_is_empty() -> None:
    assert parse_cmdline(b"") == []


def test_setproctitle_padding_is_dropped() -> None:
    # setproctitle overwrites argv in place and pads the old area with NULs.
    assert parse_cmdline(b"postgres: checkpointer   \0\0\0\0\0\0") == ["postgres: checkpointer   "]


def test_empty_argument_in_the_middle_is_kept() -> None:
    assert parse_cmdline(b"prog\0\0--flag\0") == ["prog", "", "--flag"]


def test_undecodable_bytes_survive_a_round_trip() -> None:
    raw = b"/opt/caf\xe9/run\0--name=\xff\xfe\0"
    args = parse_cmdline(raw)
    assert [to_bytes(a) for a in args] == [
        b"/opt/caf\xe9/run",
        b"--name=\xff\xfe",
    ]
    assert args == [EscapedText("/opt/caf\\xe9/run"), EscapedText("--name=\\xff\\xfe")]


@fuzz
@given(st.lists(st.binary().filter(lambda b: b"\0" not in b), min_size=1).filter(lambda a: a[-1]))
def test_argv_round_trip(argv: list[bytes]) -> None:
    """Whatever bytes a program got as argv come back, as long as the last one is not empty."""
    raw = b"\0".join(argv) + b"\0"
    args = parse_cmdline(raw)
    assert [to_bytes(a) for a in args] == argv
    assert all(a.encode("utf-8") for a in args if a)


@fuzz
@given(st.binary())
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert all(isinstance(arg, str) for arg in parse_cmdline(data))
