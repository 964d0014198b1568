"""The real daemon with outputs in trouble: a stdout nobody reads, a slow reader, a
closed stdout, a full device, journald gone and back. Records are lost and said to
be lost; the daemon never stops ticking and always stops on SIGTERM."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from memdoor.lab.daemon_process import DaemonProcess, NotifySocket, write_config
from memdoor.lab.private_journald import running_journald
from memdoor.lab.workload_parent import Workload
from tests.daemon.journal_receiver import JournalReceiver
from tests.record_schema import validate_record

# SIGTERM is honoured within a second; this margin only absorbs a loaded machine.
STOP_MARGIN_SECONDS = 5
# How much a snapshot with 20,000 mappings weighs on stdout: a few MB, so three
# targets' first snapshots overflow stdout's 4 MiB queue at once.
BIG_SNAPSHOT_ARGS = ("--touch-mb", "300", "--mappings", "20000")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[JournalReceiver]:
    journal = JournalReceiver(tmp_path / "journal.sock")
    yield journal
    journal.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


class Pipe:
    """A pipe for the daemon's stdout: nobody reads it unless the test does."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()

    def started(self) -> None:
        """The daemon holds its copy of the write end; ours would keep EOF away."""
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    def close(self) -> None:
        self.started()
        os.close(self.read_end)


@pytest.fixture
def unread_pipe() -> Iterator[Pipe]:
    pipe = Pipe()
    yield pipe
    pipe.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.05)


def later(records: list[dict[str, Any]], first: dict[str, Any], event: str) -> int:
    """How many event records came after first."""
    return [r["event"] for r in records[records.index(first) + 1 :]].count(event)


@pytest.fixture
def daemons() -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def start(*args: Any, **kwargs: Any) -> DaemonProcess:
        daemon = DaemonProcess(*args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def journald_sink(socket_path: Path) -> str:
    return f'[sinks.journald]\nenabled = true\nsocket = "{socket_path}"\n'


def targets(pid: int, count: int, threshold: int = 1, **extra: str) -> str:
    settings = "".join(f"{key} = {value}\n" for key, value in extra.items())
    return "".join(
        f'[[target]]\nname = "t{n}"\npid = {pid}\nthreshold = {threshold}\ninterval = 0.2\n'
        + settings
        for n in range(count)
    )


def big_snapshots_config(tmp_path: Path, receiver: JournalReceiver, workload: Workload) -> Path:
    return write_config(
        tmp_path / "a.toml",
        journald_sink(receiver.path) + targets(workload.pid, 3, detail='"full"'),
    )


def stop_within_margin(daemon: DaemonProcess) -> int:
    """SIGTERM; the exit code, asserting the daemon was gone well within the margin."""
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    code = daemon.proc.wait(STOP_MARGIN_SECONDS)
    assert time.monotonic() - started < STOP_MARGIN_SECONDS
    daemon.stop()
    return code


def test_a_stdout_nobody_reads_costs_records_not_ticks_and_sigterm_stops_it(
    tmp_path, receiver, notify, unread_pipe, daemons, spawn_workload
) -> None:
    workload = spawn_workload(*BIG_SNAPSHOT_ARGS)
    daemon = daemons(
        big_snapshots_config(tmp_path, receiver, workload),
        env={"NOTIFY_SOCKET": str(notify.path)},
        stdout=unread_pipe.write_end,
    )
    unread_pipe.started()

    failed = receiver.wait_record(lambda r: r["event"] == "sink_failed")
    assert failed["sink"] == "stdout" and "not being read" in failed["detail"]
    # Still ticking: samples keep coming after stdout stalled, and STATUS= says
    # what stdout has lost.
    wait_until(lambda: later(receiver.records, failed, "sample") >= 10, "samples after the stall")
    wait_until(
        lambda: any("dropped on stdout" in v for _t, v in notify.assignments("STATUS")),
        "a STATUS= counting what stdout dropped",
    )

    assert stop_within_margin(daemon) == 0
    notify.wait_for("STOPPING", "1")
    receiver.wait_record(lambda r: r["event"] == "daemon_stopping")
    assert receiver.events().count("sink_failed") == 1
    assert daemon.stderr.count("sink stdout failed") == 1
    assert "Traceback" not in daemon.stderr
    for record in receiver.records:
        validate_record(record)


def test_a_reader_that_resumes_gets_whole_lines_and_the_count_of_what_it_missed(
    tmp_path, receiver, unread_pipe, daemons, spawn_workload
) -> None:
    workload = spawn_workload(*BIG_SNAPSHOT_ARGS)
    config = big_snapshots_config(tmp_path, receiver, workload)
    daemon = daemons(config, stdout=unread_pipe.write_end)
    unread_pipe.started()
    receiver.wait_record(lambda r: r["event"] == "sink_failed")

    lines: list[dict[str, Any]] = []

    def read() -> None:
        # Every line must parse: a line cut by a partial write would not.
        with os.fdopen(os.dup(unread_pipe.read_end), "rb") as stream:
            for line in stream:
                lines.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_until(lambda: any("dropped_records" in r for r in lines), "a count on stdout")
    assert stop_within_margin(daemon) == 0
    # The daemon is gone, and with it the last write end: the reader sees the end.
    reader.join(30)
    assert not reader.is_alive()

    told = [r for r in lines if "dropped_records" in r]
    assert all(r["dropped_records"] >= 1 for r in told)
    assert lines[0]["event"] == "daemon_started"
    # journald took everything: none of its copies carries a count.
    assert all(dropped is None for _record, dropped in receiver.entries)
    assert not any("dropped_records" in r for r in receiver.records)
    for record in lines:
        validate_record(record)


CLOSED_STDOUT = ("sh", "-c", 'exec "$@" >&-', "sh")


def test_a_closed_stdout_is_a_missing_sink_not_a_traceback(
    tmp_path, receiver, daemons, spawn_workload
) -> None:
    workload = spawn_workload("--touch-mb", "8")
    config = write_config(
        tmp_path / "a.toml", journald_sink(receiver.path) + targets(workload.pid, 1, threshold=99)
    )
    daemon = daemons(config, prefix=CLOSED_STDOUT)

    started = receiver.wait_record(lambda r: r["event"] == "daemon_started")
    assert started["sinks"] == [
        {"name": "stdout", "state": "unavailable", "detail": "standard output is closed"},
        {"name": "journald", "state": "on", "detail": str(receiver.path)},
    ]
    assert started["message"].endswith("sinks journald")
    receiver.wait_record(lambda r: r["event"] == "target_found")

    # A change to stdout's settings cannot take effect: the reload says so.
    write_config(config, config.read_text() + '[sinks.stdout]\nformat = "ecs"\n')
    daemon.signal(signal.SIGHUP)
    reloaded = receiver.wait_record(lambda r: r["event"] == "config_reloaded")
    assert reloaded["settings_changed"] == ["sinks.stdout.format"]
    assert reloaded["not_applied"] == [
        {"key": "sinks.stdout.format", "reason": "standard output is closed"}
    ]

    assert stop_within_margin(daemon) == 0
    assert "sink_failed" not in receiver.events()
    assert daemon.stderr.count("sink stdout unavailable: standard output is closed") == 1
    assert "Traceback" not in daemon.stderr
    for record in receiver.records:
        validate_record(record)


def test_a_bad_config_with_stdout_closed_exits_78_without_a_traceback(tmp_path, daemons) -> None:
    config = write_config(tmp_path / "bad.toml", '[[target]]\nname = "a"\npid = 1\nthreshold = 0\n')
    daemon = daemons(config, prefix=CLOSED_STDOUT)

    assert daemon.proc.wait(30) == 78
    daemon.stop()
    assert str(config) in daemon.stderr and "threshold" in daemon.stderr
    assert "Traceback" not in daemon.stderr


def test_a_full_device_as_stdout_is_reported_once_and_the_daemon_goes_on(
    tmp_path, receiver, daemons, spawn_workload
) -> None:
    workload = spawn_workload("--touch-mb", "300")
    sinks = journald_sink(receiver.path)
    config = write_config(tmp_path / "a.toml", sinks + targets(workload.pid, 1))
    with open("/dev/full", "w") as full:
        daemon = daemons(config, stdout=full)
        failed = receiver.wait_record(lambda r: r["event"] == "sink_failed")
        # Records keep coming after it: samples every interval above the threshold.
        wait_until(lambda: later(receiver.records, failed, "sample") >= 3, "samples after it")
        assert stop_within_margin(daemon) == 0

    assert failed["sink"] == "stdout" and failed["detail"] == os.strerror(errno.ENOSPC)
    assert receiver.events().count("sink_failed") == 1
    assert daemon.stderr.count("sink stdout failed: No space left on device") == 1
    assert "Traceback" not in daemon.stderr


def test_journald_gone_and_back_is_said_once_and_counted_in_its_next_entry(
    tmp_path_factory, daemons, spawn_workload
) -> None:
    """A real journald stopped, then another started behind the same socket path."""
    workload = spawn_workload("--touch-mb", "300")
    socket_link = tmp_path_factory.mktemp("link") / "journal.sock"
    config = write_config(
        tmp_path_factory.mktemp("config") / "a.toml",
        journald_sink(socket_link) + targets(workload.pid, 1),
    )
    with running_journald(tmp_path_factory.mktemp("first")) as first:
        socket_link.symlink_to(first.socket_path)
        daemon = daemons(config)
        daemon.wait_record(lambda r: r["event"] == "sample")
    # The record that met the stopped journald is the first one lost.
    failed = daemon.wait_record(lambda r: r["event"] == "sink_failed")
    assert failed["sink"] == "journald"
    with running_journald(tmp_path_factory.mktemp("second")) as second:
        socket_link.unlink()
        socket_link.symlink_to(second.socket_path)
        back = daemon.records[-1]
        wait_until(lambda: later(daemon.records, back, "sample") >= 3, "samples once it is back")
        entries = second.journalctl(
            "SYSLOG_IDENTIFIER=memdoor",
            "--all",
            "--output=json",
            "--output-fields=MEMDOOR_RECORD,MEMDOOR_DROPPED_RECORDS",
        )
        assert entries.returncode == 0, entries.stderr.decode()
        stored = [json.loads(line) for line in entries.stdout.splitlines()]
        assert stop_within_margin(daemon) == 0

    assert stored, "nothing reached the second journald"
    head = json.loads(stored[0]["MEMDOOR_RECORD"])
    assert head["dropped_records"] >= 1
    assert stored[0]["MEMDOOR_DROPPED_RECORDS"] == str(head["dropped_records"])
    assert not any("MEMDOOR_DROPPED_RECORDS" in entry for entry in stored[1:])
    assert daemon.events().count("sink_failed") == 1
    assert not any("dropped_records" in r for r in daemon.records)
    validate_record(head)
