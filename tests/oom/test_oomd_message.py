"""systemd-oomd's kill lines parsed: recorded text of each form, hostile cgroup names, any bytes.

The recorded lines are systemd 252's (Debian 12, src/oom/oomd-manager.c), as
the VM suite's systemd-oomd wrote them, and the "Marked … for killing" form of
the versions that call pre-kill hooks.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from memdoor.oom.oomd_message import DETAIL_BYTES, OomdReason, parse_oomd_message, under
from memdoor.process_text import EscapedText

PRESSURE_252 = (
    b"Killed /system.slice/squeezed.service due to memory pressure for /system.slice "
    b"being 63.91% > 20.00% for > 2s with reclaim activity"
)
SWAP_252 = (
    b"Killed /user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox.scope due "
    b"to memory used (8221548544) / total (8321548544) and swap used (1920000000) / total "
    b"(2000000000) being more than 90.00%"
)
MARKED = (
    b"Marked /system.slice/squeezed.service for killing due to memory pressure for "
    b"/system.slice being 63.91% > 20.00% for > 2s with reclaim activity"
)


def test_a_pressure_kill_names_its_cgroup_and_reason() -> None:
    assert parse_oomd_message(PRESSURE_252) == OomdReason(
        "/system.slice/squeezed.service",
        "memory-pressure",
        "memory pressure for /system.slice being 63.91% > 20.00% for > 2s with reclaim activity",
    )


def test_a_swap_kill_is_memory_used() -> None:
    reason = parse_oomd_message(SWAP_252)
    assert reason is not None
    assert reason.cgroup.endswith("/app.slice/app-firefox.scope")
    assert reason.reason == "memory-used"
    assert reason.detail.startswith("memory used (8221548544) / total (8321548544)")


def test_the_marked_form_of_newer_versions_gives_the_same() -> None:
    reason = parse_oomd_message(MARKED)
    assert reason is not None
    assert (reason.cgroup, reason.reason) == ("/system.slice/squeezed.service", "memory-pressure")


def test_other_lines_of_oomd_are_not_kills() -> None:
    for line in (
        b"Considered 3 cgroups for killing, top candidates were:",
        b"\tPath: /system.slice/squeezed.service",
        b"Killed /system.slice/x.service due to something new",
        b"Killed x.service due to memory pressure for /system.slice being 1% > 0%",
        b"Killed /system.slice/squeezed.service due to memory pressure",
        PRESSURE_252[:40],
        b"",
    ):
        assert parse_oomd_message(line) is None, line


def test_a_cgroup_named_like_the_message_keeps_its_own_name() -> None:
    """A delegated subtree's owner names its cgroups: the greedy cut takes the last
    "due to", after which only oomd's words (and the monitored unit) follow."""
    hostile = b"/user.slice/evil due to memory used (1) / total (2) x"
    reason = parse_oomd_message(
        b"Killed " + hostile + b" due to memory used (5) / total (9) "
        b"and swap used (1) / total (2) being more than 90.00%"
    )
    assert reason is not None
    assert reason.cgroup == hostile.decode()
    assert reason.detail.startswith("memory used (5)")


def test_a_cgroup_that_is_not_utf8_is_kept_in_the_escaped_form() -> None:
    reason = parse_oomd_message(
        b"Killed /system.slice/a\xffb.scope due to memory used (1) / "
        b"total (2) and swap used (1) / total (2) being more than 9%"
    )
    assert reason is not None
    assert isinstance(reason.cgroup, EscapedText)
    assert reason.cgroup == EscapedText("/system.slice/a\\xffb.scope")


def test_the_detail_is_cut_to_its_bound() -> None:
    monitored = b"/" + b"m" * 5000
    reason = parse_oomd_message(
        b"Killed /a due to memory pressure for "
        + monitored
        + b" being 1% > 0% for > 1s with reclaim activity"
    )
    assert reason is not None
    assert len(reason.detail.encode()) <= DETAIL_BYTES
    assert reason.detail.endswith("…")


@given(st.binary(max_size=300))
def test_any_bytes_parse_or_are_refused(raw: bytes) -> None:
    reason = parse_oomd_message(raw)
    assert reason is None or reason.reason in ("memory-pressure", "memory-used")
    assert parse_oomd_message(b"Killed /x due to memory used " + raw) is not None


def test_a_kill_of_an_ancestor_covers_the_cgroups_below() -> None:
    assert under("/system.slice/a.service/sub", "/system.slice/a.service")
    assert under("/system.slice/a.service", "/system.slice/a.service")
    assert not under("/system.slice/a.service2", "/system.slice/a.service")
