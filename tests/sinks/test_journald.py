"""JournaldSender against a socket the test owns, then against a real systemd-journald."""

from __future__ import annotations

import array
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from memdoor.lab.private_journald import RealJournald, running_journald
from memdoor.sinks.journal_protocol import decode_entry
from memdoor.sinks.journald import JournaldSender, SendCounts, SendOutcome

ALL_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
SIX_MB = 6 * 1000 * 1000
# Generous: only a hang would take this long, and then the test fails instead of wedging.
HANG_GUARD_SECONDS = 60


def json_record(min_size: int, indent: Optional[int] = None) -> str:
    """A snapshot-shaped JSON document of at least min_size bytes."""
    mappings: list[dict[str, Any]] = []
    record = {"target": "myapp", "pid": 4242, "mappings": mappings}
    step = 2000
    while True:
        base = len(mappings)
        mappings.extend(
            {
                "start": f"{0x7F0000000000 + i * 4096:x}",
                "rss_kb": i % 977,
                "path": f"/lib/lib{i}.so",
            }
            for i in range(base, base + step)
        )
        text = json.dumps(record, indent=indent)
        if len(text) >= min_size:
            return text


def receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One datagram and the descriptors passed with it (the caller closes them)."""
    fds = array.array("i")
    data, ancillary, flags, _address = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    assert not flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC)
    return data, list(fds)


def read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        assert chunk, "memfd shorter than its size"
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def open_memfds() -> list[str]:
    """This process's open memfds, to show the sender closes its own."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("/memfd:memdoor-journal"):
            found.append(target)
    return found


@pytest.fixture
def socket_path(tmp_path: Path) -> str:
    return str(tmp_path / "journal.sock")


@pytest.fixture
def receiver(socket_path: str) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(socket_path)
        sock.settimeout(HANG_GUARD_SECONDS)
        yield sock
    finally:
        sock.close()


@pytest.fixture
def sender(socket_path: str) -> Iterator[JournaldSender]:
    journal = JournaldSender(socket_path)
    try:
        yield journal
    finally:
        journal.close()


def test_small_entry_arrives_as_one_datagram(
    receiver: socket.socket, sender: JournaldSender
) -> None:
    outcome = sender.send({"MESSAGE": "hello", "PRIORITY": "6", "MEMDOOR_TARGET": "myapp"})

    assert outcome == SendOutcome("sent")
    data, fds = receive(receiver)
    assert fds == []
    assert decode_entry(data) == {"MESSAGE": b"hello", "PRIORITY": b"6", "MEMDOOR_TARGET": b"myapp"}
    assert sender.counts == SendCounts(sent=1)


def test_six_megabyte_entry_arrives_through_a_sealed_memfd(
    receiver: socket.socket, sender: JournaldSender
) -> None:
    record = json_record(SIX_MB)

    outcome = sender.send({"MESSAGE": "big", "MEMDOOR_RECORD": record})

    assert outcome == SendOutcome("sent_via_memfd")
    data, fds = receive(receiver)
    try:
        assert data == b""
        assert len(fds) == 1
        assert fcntl.fcntl(fds[0], fcntl.F_GET_SEALS) & ALL_SEALS == ALL_SEALS
        fields = decode_entry(read_all(fds[0]))
    finally:
        for fd in fds:
            os.close(fd)
    assert fields == {"MESSAGE": b"big", "MEMDOOR_RECORD": record.encode()}
    assert sender.counts == SendCounts(memfd=1)
    assert open_memfds() == []


def test_missing_socket_is_a_failed_outcome_not_an_exception(sender: JournaldSender) -> None:
    small = sender.send({"MESSAGE": "nobody listens"})
    large = sender.send({"MESSAGE": "nobody listens", "MEMDOOR_RECORD": "x" * SIX_MB})

    assert small == SendOutcome("failed", os.strerror(errno.ENOENT))
    assert large == SendOutcome("failed", os.strerror(errno.ENOENT))
    assert sender.counts == SendCounts(failed=2)
    assert open_memfds() == []


def test_restarted_receiver_is_reached_without_a_new_sender(
    socket_path: str, sender: JournaldSender
) -> None:
    """What a journald restart looks like: a dead socket file, then a new one at the same path."""
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(socket_path)
    dead.close()

    refused = sender.send({"MESSAGE": "journald is down"})

    os.unlink(socket_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as restarted:
        restarted.bind(socket_path)
        restarted.settimeout(HANG_GUARD_SECONDS)
        delivered = sender.send({"MESSAGE": "journald is back"})
        data, _fds = receive(restarted)

    assert refused == SendOutcome("failed", os.strerror(errno.ECONNREFUSED))
    assert delivered == SendOutcome("sent")
    assert decode_entry(data) == {"MESSAGE": b"journald is back"}
    assert sender.counts == SendCounts(sent=1, failed=1)


def test_receiver_that_never_reads_gives_dropped_busy_without_blocking(
    receiver: socket.socket, sender: JournaldSender
) -> None:
    outcomes: list[SendOutcome] = []

    def fill_queue() -> None:
        for number in range(1000):
            outcomes.append(sender.send({"MESSAGE": f"entry {number}"}))
            if outcomes[-1].status != "sent":
                break
        outcomes.append(sender.send({"MESSAGE": "large", "MEMDOOR_RECORD": "x" * SIX_MB}))

    filler = threading.Thread(target=fill_queue, daemon=True)
    filler.start()
    filler.join(HANG_GUARD_SECONDS)
    assert not filler.is_alive(), "send blocked on a full queue"

    *queued, small_busy, large_busy = outcomes
    assert queued and all(outcome == SendOutcome("sent") for outcome in queued)
    assert small_busy == SendOutcome("dropped_busy", os.strerror(errno.EAGAIN))
    assert large_busy == SendOutcome("dropped_busy", os.strerror(errno.EAGAIN))
    assert sender.counts == SendCounts(sent=len(queued), dropped=2)
    assert open_memfds() == []

    received = []
    receiver.setblocking(False)
    while True:
        try:
            received.append(decode_entry(receive(receiver)[0])["MESSAGE"])
        except BlockingIOError:
            break
    assert received == [f"entry {number}".encode() for number in range(len(queued))]
    assert sender.send({"MESSAGE": "drained"}) == SendOutcome("sent")


@pytest.fixture(scope="module")
def journald(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealJournald]:
    with running_journald(tmp_path_factory.mktemp("journald")) as real:
        yield real


@pytest.fixture
def journald_sender(journald: RealJournald) -> Iterator[JournaldSender]:
    journal = JournaldSender(journald.socket_path)
    try:
        yield journal
    finally:
        journal.close()


def journal_entries(journald: RealJournald, *matches: str) -> list[dict[str, Any]]:
    result = journald.journalctl("--all", "--output=json", *matches)
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_fields_reach_journald_and_match_by_target(
    journald: RealJournald, journald_sender: JournaldSender
) -> None:
    record = json.dumps({"target": "myapp", "rss_kb": 123456})
    fields = {
        "MESSAGE": "memdoor: myapp crossed its threshold",
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "memdoor",
        "MEMDOOR_TARGET": "myapp",
        "MEMDOOR_RECORD": record,
    }

    assert journald_sender.send(fields) == SendOutcome("sent")
    assert journald_sender.send({**fields, "MEMDOOR_TARGET": "other"}) == SendOutcome("sent")

    entries = journal_entries(journald, "MEMDOOR_TARGET=myapp")
    assert len(entries) == 1
    assert {name: entries[0][name] for name in fields} == fields
    assert entries[0]["_TRANSPORT"] == "journal"
    assert entries[0]["_PID"] == str(os.getpid())
    assert json.loads(entries[0]["MEMDOOR_RECORD"]) == {"target": "myapp", "rss_kb": 123456}


@pytest.mark.parametrize(
    ("target", "size", "indent", "expected_status"),
    [
        # Pretty-printed, so the value has newlines and takes the binary field form.
        ("big-300k", 300_000, 1, ("sent", "sent_via_memfd")),
        ("big-6m", SIX_MB, None, ("sent_via_memfd",)),
    ],
)
def test_large_record_arrives_whole_byte_exact_and_once(
    journald: RealJournald,
    journald_sender: JournaldSender,
    target: str,
    size: int,
    indent: Optional[int],
    expected_status: tuple[str, ...],
) -> None:
    record = json_record(size, indent)

    outcome = journald_sender.send(
        {"MESSAGE": f"snapshot of {target}", "MEMDOOR_TARGET": target, "MEMDOOR_RECORD": record}
    )

    assert outcome.status in expected_status
    assert len(journal_entries(journald, f"MEMDOOR_TARGET={target}")) == 1
    stored = journald.journalctl(
        f"MEMDOOR_TARGET={target}", "--output=cat", "--output-fields=MEMDOOR_RECORD"
    )
    assert stored.returncode == 0, stored.stderr.decode()
    assert stored.stdout == record.encode() + b"\n"
    assert json.loads(stored.stdout) == json.loads(record)


def test_stdout_line_over_line_max_is_split_which_is_why_memdoor_uses_the_native_socket(
    journald: RealJournald,
) -> None:
    line = json.dumps({"pad": "x" * 60_000})
    program = "import json, sys; print(json.dumps({'pad': 'x' * 60_000})); sys.stdout.flush()"

    subprocess.run(
        journald.stdout_stream_command([sys.executable, "-c", program], "memdoor-stdout-demo"),
        check=True,
        timeout=HANG_GUARD_SECONDS,
    )

    pieces = journal_entries(journald, "SYSLOG_IDENTIFIER=memdoor-stdout-demo")
    assert len(pieces) >= 2
    assert pieces[0]["_LINE_BREAK"] == "line-max"
    assert "".join(piece["MESSAGE"] for piece in pieces) == line
    for piece in pieces:
        with pytest.raises(json.JSONDecodeError):
            json.loads(piece["MESSAGE"])


def _host_state() -> dict[str, Optional[list[str]]]:
    state: dict[str, Optional[list[str]]] = {}
    for top in ("/run/systemd/journal", "/run/log/journal", "/var/log/journal"):
        if not os.path.isdir(top):
            state[top] = None
            continue
        state[top] = sorted(
            os.path.join(directory, name)
            for directory, subdirs, files in os.walk(top)
            for name in subdirs + files
        )
    return state


def test_running_journald_cleans_up_after_itself(tmp_path: Path) -> None:
    before = _host_state()
    straggler: Optional[subprocess.Popen[bytes]] = None
    try:
        with running_journald(tmp_path) as real:
            straggler = subprocess.Popen(real.in_namespace(["sleep", "600"]))
            journald_pid = real.pid
            assert Path(real.socket_path).is_socket()
        # The test left `sleep` running in the namespace; tear-down killed it.
        assert straggler.wait(timeout=HANG_GUARD_SECONDS) == -signal.SIGKILL
        assert not os.path.exists(f"/proc/{journald_pid}/ns")
    finally:
        if straggler is not None and straggler.poll() is None:
            straggler.kill()
            straggler.wait()
    assert list(tmp_path.glob("run/log/journal/*/system.journal"))
    assert _host_state() == before
