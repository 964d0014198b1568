from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.errors import ParseError
from memdoor.procfs.status import ProcStatus, parse_status
from tests.procfs.recorded import damaged, fuzz, prefixes, recorded_text, value_or_parse_error

SLEEP = ProcStatus(
    name="sleep",
    ppid=7338,
    uid=0,
    vm_rss_kb=1504,
    rss_anon_kb=96,
    rss_file_kb=1408,
    rss_shmem_kb=0,
    vm_swap_kb=0,
    vm_pte_kb=44,
    vm_hwm_kb=1504,
    vm_size_kb=2500,
    threads=1,
)


def test_recorded_process() -> None:
    assert parse_status(recorded_text("status")) == SLEEP


def test_kernel_thread_has_no_memory_lines() -> None:
    assert parse_status(recorded_text("status_kthread")) == ProcStatus(
        name="kthreadd",
        ppid=0,
        uid=0,
        vm_rss_kb=None,
        rss_anon_kb=None,
        rss_file_kb=None,
        rss_shmem_kb=None,
        vm_swap_kb=None,
        vm_pte_kb=None,
        vm_hwm_kb=None,
        vm_size_kb=None,
        threads=1,
    )


def test_kernel_before_4_5_has_no_rss_split() -> None:
    status = parse_status(recorded_text("status_pre45"))
    assert status == dataclasses.replace(
        SLEEP, rss_anon_kb=None, rss_file_kb=None, rss_shmem_kb=None
    )


def test_unknown_and_colonless_lines_are_ignored() -> None:
    text = recorded_text("status").replace(
        "Threads:", "SomeFutureField:\t7 kB\nno colon on this line\nThreads:"
    )
    assert parse_status(text) == SLEEP


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "VmRSS:\t    1504 kB\n",
        "Name:\tx\nVmRSS:\t    1504 MB\n",
        "Name:\tx\nVmRSS:\t    kB\n",
        "Name:\tx\nVmRSS:\t    -4 kB\n",
        "Name:\tx\nVmRSS:\t    1504 kB extra\n",
        "Name:\tx\nPPid:\tabc\n",
        "Name:\tx\nPPid:\t\n",
        "Name:\tx\nThreads:\t1.5\n",
        "Name:\tx\nUid:\troot\t0\t0\t0\n",
        # Non-ASCII digits pass str.isdigit() but not int().
        "Name:\tx\nPPid:\t\u00b2\n",
        "Name:\tx\nVmRSS:\t\u00b9\u00b2 kB\n",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_status(text)


def test_every_cut_gives_parse_error_or_only_true_fields() -> None:
    """A read cut short may lose fields (None) but must never yield a wrong one."""
    full = dataclasses.asdict(SLEEP)
    for text in prefixes(recorded_text("status")):
        status = value_or_parse_error(parse_status, text)
        if status is None:
            continue
        assert status.name == SLEEP.name, repr(text[-40:])
        for key, value in dataclasses.asdict(status).items():
            assert value is None or value == full[key], (key, repr(text[-40:]))


@fuzz
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    value_or_parse_error(parse_status, text)


@fuzz
@given(damaged(recorded_text("status")))
def test_damaged_recording(text: str) -> None:
    value_or_parse_error(parse_status, text)
