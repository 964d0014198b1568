"""systemd-oomd's log followed through a real journald and a real journalctl.

A private journald (memdoor.lab.private_journald) stands in for the host's; the
follower runs journalctl in its namespace, matched on an identifier of the
test's instead of _SYSTEMD_UNIT (which only a unit's own process can carry).
tests/vm/test_v2_oomd.py follows the real systemd-oomd.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

from memdoor.lab.private_journald import RealJournald, running_journald
from memdoor.oom.oomd_journal import COMMAND, LINE_BYTES, OomdJournal
from memdoor.oom.oomd_message import OomdReason
from memdoor.process_text import EscapedText

IDENTIFIER = "memdoor-test-oomd"
KILL = (
    b"Killed /system.slice/squeezed.service due to memory pressure for /system.slice "
    b"being 63.91% > 20.00% for > 2s with reclaim activity"
)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[RealJournald]:
    with running_journald(tmp_path) as real:
        yield real


def follower_of(journal: RealJournald) -> OomdJournal:
    command = [*COMMAND[:-1], f"SYSLOG_IDENTIFIER={IDENTIFIER}"]
    return OomdJournal(journal.in_namespace(command))


def log(journal: RealJournald, *lines: bytes) -> None:
    subprocess.run(
        journal.stdout_stream_command(["cat"], IDENTIFIER),
        input=b"".join(line + b"\n" for line in lines),
        check=True,
        timeout=60,
    )


async def reason_within(
    follower: OomdJournal, cgroup: str, seconds: float = 30.0
) -> Optional[OomdReason]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reason = follower.reason_for(cgroup)
        if reason is not None:
            return reason
        await asyncio.sleep(0.05)
    return None


def test_a_kill_line_gives_the_reason_for_the_cgroup_and_those_below(
    journal: RealJournald,
) -> None:
    async def scenario() -> tuple[Optional[OomdReason], Optional[OomdReason], bool]:
        loop = asyncio.get_running_loop()
        follower = follower_of(journal)
        follower.start(loop)
        try:
            await asyncio.sleep(1.0)  # journalctl is following
            log(journal, b"Considered 1 cgroups for killing, top candidates were:", KILL)
            exact = await reason_within(follower, "/system.slice/squeezed.service")
            below = follower.reason_for("/system.slice/squeezed.service/worker")
            return exact, below, follower.reason_for("/system.slice/other.service") is None
        finally:
            follower.stop(loop)

    exact, below, other_none = asyncio.run(scenario())
    assert exact is not None and exact.reason == "memory-pressure"
    assert exact.detail.startswith("memory pressure for /system.slice being 63.91%")
    assert below == exact
    assert other_none


def test_a_message_that_is_not_utf8_reaches_the_parser_as_bytes(journal: RealJournald) -> None:
    """journalctl writes such a MESSAGE as an array of byte values."""

    async def scenario() -> Optional[OomdReason]:
        loop = asyncio.get_running_loop()
        follower = follower_of(journal)
        follower.start(loop)
        try:
            await asyncio.sleep(1.0)
            log(
                journal,
                b"x" * (LINE_BYTES + 10),
                b"Killed /system.slice/a\xffb.scope due to memory used (1) / total (2) and swap "
                b"used (1) / total (2) being more than 90.00%",
            )
            return await reason_within(follower, EscapedText("/system.slice/a\\xffb.scope"))
        finally:
            follower.stop(loop)

    reason = asyncio.run(scenario())
    assert reason is not None and reason.reason == "memory-used"


def test_no_journalctl_is_said_and_nothing_is_followed() -> None:
    async def scenario() -> OomdJournal:
        follower = OomdJournal(["/nonexistent/journalctl"])
        follower.start(asyncio.get_running_loop())
        return follower

    follower = asyncio.run(scenario())
    assert not follower.following
    assert follower.unavailable is not None and follower.unavailable.reason == "vanished"


def test_a_journalctl_that_ends_is_said(tmp_path: Path) -> None:
    async def scenario() -> OomdJournal:
        follower = OomdJournal(["sh", "-c", "echo '{\"MESSAGE\": 1}'; exit 3"])
        follower.start(asyncio.get_running_loop())
        deadline = time.monotonic() + 30
        while follower.following and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return follower

    follower = asyncio.run(scenario())
    assert not follower.following
    assert follower.unavailable is not None
    assert follower.unavailable.detail == "ended with exit status 3"
