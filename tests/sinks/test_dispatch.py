"""The dispatcher over a real pipe and a real datagram socket: drops counted and told,
failures said once per episode, through the other sinks."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memdoor.emitter import DaemonRecords
from memdoor.events import Event
from memdoor.records import RecordLog
from memdoor.render.ecs import ecs_formatter
from memdoor.sinks.dispatch import Dispatcher
from memdoor.sinks.journal_protocol import decode_entry
from memdoor.sinks.journald import JournaldSender
from memdoor.sinks.stdout import StdoutSink
from tests.record_schema import validate_record
from tests.sinks.small_pipe import small_pipe

HANG_GUARD_SECONDS = 30
# stdout may hold this much for its reader; records a third of it fill it in a few.
LIMIT = 64 * 1024
BIG = LIMIT // 3


class Rig:
    """A dispatcher writing to a pipe the test reads when it likes and a journal
    socket it can take away and bring back."""

    def __init__(self, tmp_path: Path) -> None:
        self.read_end, write_end = small_pipe()
        self.stdout_file = os.fdopen(write_end, "w")
        self.stdout = StdoutSink(self.stdout_file, LIMIT)
        self.socket_path = str(tmp_path / "journal.sock")
        self.receiver: socket.socket | None = None
        self.journald = JournaldSender(self.socket_path)
        self.dispatcher = Dispatcher(self.stdout, self.journald)
        self.records = DaemonRecords(RecordLog(self.dispatcher))
        self.dispatcher.on_failure = self.records.sink_failed
        self.received = b""
        self.dropped_fields: list[bytes | None] = []

    def emit(self, size: int = 100) -> None:
        self.records.writer.write("warning", Event.SAMPLE, {"target": "t", "message": "x" * size})

    def bind(self) -> None:
        self.receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.receiver.bind(self.socket_path)
        self.receiver.setblocking(False)

    def unbind(self) -> None:
        assert self.receiver is not None
        self.receiver.close()
        os.unlink(self.socket_path)
        self.receiver = None

    def journal(self) -> list[dict[str, Any]]:
        """Records received since the last call; their MEMDOOR_DROPPED_RECORDS fields go
        to dropped_fields."""
        assert self.receiver is not None
        entries = []
        while True:
            try:
                data, fds, _flags, _address = socket.recv_fds(self.receiver, 1 << 20, 1)
            except BlockingIOError:
                return entries
            if fds:
                with os.fdopen(fds[0], "rb") as memfd:
                    # The sender's writes left the shared offset at the end.
                    memfd.seek(0)
                    data = memfd.read()
            fields = decode_entry(data)
            entries.append(json.loads(fields["MEMDOOR_RECORD"]))
            self.dropped_fields.append(fields.get("MEMDOOR_DROPPED_RECORDS"))

    def stdout_records(self) -> list[dict[str, Any]]:
        """Read stdout until the writer has nothing queued; every line parsed."""
        assert self.stdout.writer is not None
        os.set_blocking(self.read_end, False)
        while True:
            # Idle before the read: everything written is in the pipe already.
            written = self.stdout.writer.idle
            try:
                chunk = os.read(self.read_end, 1 << 20)
            except BlockingIOError:
                if written:
                    break
                continue
            self.received += chunk
        lines, _, rest = self.received.rpartition(b"\n")
        assert rest == b""
        self.received = b""
        return [json.loads(line) for line in lines.splitlines()]

    def close(self) -> None:
        os.close(self.read_end)
        self.stdout.close(HANG_GUARD_SECONDS)
        self.stdout_file.close()
        self.journald.close()
        if self.receiver is not None:
            self.receiver.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    made = Rig(tmp_path)
    try:
        yield made
    finally:
        made.close()


def events(records: list[dict[str, Any]]) -> list[str]:
    return [record["event"] for record in records]


def test_a_stalled_stdout_drops_says_so_once_and_counts_in_its_next_record(rig: Rig) -> None:
    rig.bind()
    for _ in range(6):
        rig.emit(BIG)
    rig.emit()

    journal = rig.journal()
    assert events(journal) == ["sample", "sample", "sink_failed"] + ["sample"] * 5
    failed = journal[2]
    assert failed["sink"] == "stdout" and "not being read" in failed["detail"]
    # journald delivered everything: no count on its copies.
    assert not any("dropped_records" in record for record in journal)
    assert rig.dispatcher.delivery["stdout"].dropped == 4
    on_stdout = rig.stdout_records()
    # Two big records fit the queue (the first left at once for the pipe); the
    # rest were dropped, and the small one that got in says how many.
    assert events(on_stdout) == ["sample"] * 3
    assert "dropped_records" not in on_stdout[0] and "dropped_records" not in on_stdout[1]
    assert on_stdout[2]["dropped_records"] == 4
    assert on_stdout[2]["message"] == journal[-1]["message"]
    for record in journal + on_stdout:
        validate_record(record)

    # Caught up: the next stall is a new episode, reported again.
    rig.emit()
    for _ in range(6):
        rig.emit(BIG)
    assert events(rig.journal()).count("sink_failed") == 1


def test_a_reader_that_catches_up_in_the_middle_of_a_stall_is_not_a_new_episode(rig: Rig) -> None:
    rig.bind()
    for _ in range(6):
        rig.emit(BIG)
    rig.emit()
    rig.emit(BIG)
    rig.emit()

    assert events(rig.journal()).count("sink_failed") == 1
    on_stdout = rig.stdout_records()
    assert [record.get("dropped_records") for record in on_stdout] == [None, None, 4, 1]


def test_journald_gone_and_back_says_so_once_and_counts_in_its_next_entry(rig: Rig) -> None:
    rig.emit()
    rig.emit()
    rig.bind()
    rig.emit()
    rig.emit()
    first = rig.journal()
    rig.unbind()
    rig.emit()
    rig.bind()
    rig.emit()
    second = rig.journal()

    assert [record.get("dropped_records") for record in first] == [2, None]
    assert rig.dropped_fields == [b"2", None, b"1"]
    assert [record.get("dropped_records") for record in second] == [1]
    on_stdout = rig.stdout_records()
    assert events(on_stdout) == ["sample", "sink_failed"] + ["sample"] * 4 + [
        "sink_failed",
        "sample",
    ]
    assert {on_stdout[1]["sink"], on_stdout[6]["sink"]} == {"journald"}
    assert not any("dropped_records" in record for record in on_stdout)
    assert rig.dispatcher.delivery["journald"].dropped == 3
    for record in first + second + on_stdout:
        validate_record(record)


def test_a_dead_stdout_is_reported_once_and_no_longer_written(rig: Rig) -> None:
    rig.bind()
    os.close(rig.read_end)
    rig.read_end = os.open(os.devnull, os.O_RDONLY)
    rig.emit()
    rig.emit()

    journal = rig.journal()
    assert events(journal) == ["sink_failed", "sample", "sample"]
    assert journal[0]["sink"] == "stdout" and journal[0]["detail"] == "Broken pipe"
    assert rig.dispatcher.delivery["stdout"].dropped == 0


def test_the_count_reaches_an_ecs_document_under_memdoor(rig: Rig) -> None:
    rig.bind()
    dispatcher = Dispatcher(rig.stdout, rig.journald, {"stdout": ecs_formatter("host")})
    records = DaemonRecords(RecordLog(dispatcher))
    dispatcher.delivery["stdout"].undelivered = 7

    records.writer.write("warning", Event.SAMPLE, {"target": "t", "message": "m"})

    (document,) = rig.stdout_records()
    assert document["memdoor"]["dropped_records"] == 7
    assert document["event"]["action"] == "sample"


def test_a_rebuilt_dispatcher_keeps_the_totals_and_the_state_of_the_sinks_it_keeps(
    rig: Rig,
) -> None:
    rig.emit()

    kept = Dispatcher(rig.stdout, rig.journald)
    kept.follow(rig.dispatcher)
    fresh = Dispatcher(rig.stdout, JournaldSender(rig.socket_path))
    fresh.follow(rig.dispatcher)

    # The record and the sink_failed that reported journald missing.
    assert kept.records == fresh.records == 2
    assert kept.delivery["journald"].undelivered == 1
    assert kept.failing == {"journald"} and fresh.failing == set()
    assert fresh.journald is not None
    fresh.journald.close()


def test_a_notice_without_stderr_never_lands_among_the_records(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """print(file=None) writes to stdout: with stderr closed that is the record stream."""
    dispatcher = Dispatcher(StdoutSink(), None)
    monkeypatch.setattr(sys, "stderr", None)

    dispatcher.notice("sink journald failed: gone")
    dispatcher.emit('{"event":"sample"}', {"event": "sample"})

    assert capsys.readouterr().out == '{"event":"sample"}\n'
