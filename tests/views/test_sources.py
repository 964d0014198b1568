"""Reading records back: journal entries as journalctl -o json writes them, and file times."""

from __future__ import annotations

import datetime
import json

from hypothesis import given
from hypothesis import strategies as st

from memdoor.views.sources import RecordFilter, RecordReader, journalctl_command
from memdoor.views.when import parse_moment

RECORD = {"timestamp": "2026-11-24T19:30:18.905Z", "event": "sample", "target": "a", "pid": 1}
NOW = datetime.datetime(2026, 11, 24, 12, 0, 0).timestamp()


def test_journal_entries_as_text_bytes_and_repeated_fields() -> None:
    text = json.dumps(RECORD)
    entries = [
        {"MEMDOOR_RECORD": text},
        # journalctl writes a field that is not printable UTF-8 as a list of byte values.
        {"MEMDOOR_RECORD": list(text.encode())},
        {"MEMDOOR_RECORD": [text, text]},
        {"MEMDOOR_RECORD": None},  # over 4096 bytes without --all
        {"MESSAGE": "no record"},
        {"MEMDOOR_RECORD": json.dumps({"@timestamp": "x", "event": {"kind": "event"}})},  # ECS
        {"MEMDOOR_RECORD": [300]},
    ]
    reader = RecordReader()
    found = list(reader.from_journal_json([json.dumps(e) for e in entries] + ["", "{damaged"]))
    assert found == [RECORD] * 3
    assert reader.skipped == 5


def test_journalctl_gets_matches_after_the_options() -> None:
    argv = journalctl_command(["web", "--since=x"], ["oom_killed"], "-1h", None, "/var/tmp/j")
    assert argv[:5] == ["journalctl", "--output=json", "--all", "--no-pager", "--quiet"]
    assert "--since=-1h" in argv and "--directory=/var/tmp/j" in argv
    rest = argv[argv.index("--") + 1 :]
    assert rest == [
        "SYSLOG_IDENTIFIER=memdoor",
        "MEMDOOR_TARGET=web",
        "MEMDOOR_TARGET=--since=x",
        "MEMDOOR_EVENT=oom_killed",
    ]


def test_the_filter() -> None:
    at = parse_moment(RECORD["timestamp"], NOW)
    assert at is not None
    assert RecordFilter().matches(RECORD)
    assert RecordFilter(targets=frozenset({"a"}), events=frozenset({"sample"})).matches(RECORD)
    assert not RecordFilter(targets=frozenset({"b"})).matches(RECORD)
    assert not RecordFilter(events=frozenset({"oom_killed"})).matches(RECORD)
    assert RecordFilter(since=at, until=at).matches(RECORD)
    assert not RecordFilter(since=at + 0.001).matches(RECORD)
    assert not RecordFilter(since=0).matches({**RECORD, "timestamp": "garbage"})


def test_file_times() -> None:
    local = datetime.datetime(2026, 11, 24, 19, 30).timestamp()
    assert parse_moment("2026-11-24 19:30", NOW) == local
    assert parse_moment("2026-11-24T19:30:00", NOW) == local
    assert parse_moment("19:30", NOW) == local
    assert parse_moment("2026-11-24T19:30:18.905Z", NOW) == 1795548618.905
    assert parse_moment("2026-11-24T20:30:18.905+01:00", NOW) == 1795548618.905
    assert parse_moment("now", NOW) == NOW
    assert parse_moment("today", NOW) == datetime.datetime(2026, 11, 24).timestamp()
    assert parse_moment("yesterday", NOW) == datetime.datetime(2026, 11, 23).timestamp()
    assert parse_moment("-1h", NOW) == NOW - 3600
    assert parse_moment("+5min", NOW) == NOW + 300
    assert parse_moment("-1.5d", NOW) == NOW - 129600
    for wrong in ("", "1h", "-1y", "next tuesday", "25:00", "-h"):
        assert parse_moment(wrong, NOW) is None, wrong


@given(amount=st.integers(0, 10**6), unit=st.sampled_from(["s", "sec", "m", "min", "h", "d", "w"]))
def test_relative_times_count_from_now(amount: int, unit: str) -> None:
    seconds = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_moment(f"-{amount}{unit}", NOW) == NOW - amount * seconds
    assert parse_moment(f"+{amount}{unit}", NOW) == NOW + amount * seconds
