"""LineWriter on real pipes and devices: it never waits for the reader, and lines stay whole."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from memdoor.sinks.line_writer import LineWriter
from tests.sinks.small_pipe import small_pipe

# Generous: only a hang takes this long.
HANG_GUARD_SECONDS = 30


class Pipe:
    """A small pipe and the writers using it."""

    def __init__(self) -> None:
        self.read_end, self.write_end = small_pipe()
        self.reading = True
        self.writers: list[LineWriter] = []

    def writer(self, limit: int) -> LineWriter:
        writer = LineWriter(self.write_end, limit=limit, name="test-writer")
        self.writers.append(writer)
        return writer

    def close_read_end(self) -> None:
        if self.reading:
            self.reading = False
            os.close(self.read_end)

    def close(self) -> None:
        """Reader first: a writer stuck in a write gets EPIPE and lets go of the
        write end before its number is closed (and could be reused)."""
        self.close_read_end()
        for writer in self.writers:
            assert writer.drain(HANG_GUARD_SECONDS) or writer.error is not None
        os.close(self.write_end)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    opened = Pipe()
    try:
        yield opened
    finally:
        opened.close()


def read_available(fd: int) -> bytes:
    """Whatever the pipe holds right now, without waiting."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.set_blocking(fd, True)
    return b"".join(chunks)


def line(number: int, size: int) -> str:
    """A JSON line of about size bytes that says which it is."""
    return json.dumps({"n": number, "pad": "x" * max(0, size - 20)})


def put_all(writer: LineWriter, lines: list[str]) -> list[str]:
    """Every put in a thread, so a put that blocks fails the test instead of hanging it."""
    outcomes: list[str] = []
    putter = threading.Thread(target=lambda: outcomes.extend(writer.put(x) for x in lines))
    putter.start()
    putter.join(HANG_GUARD_SECONDS)
    assert not putter.is_alive(), "put waited for the reader"
    return outcomes


def test_a_reader_that_stops_costs_lines_never_the_caller_and_lines_stay_whole(pipe) -> None:
    writer = pipe.writer(limit=64 * 1024)
    # Sizes around the pipe's page and PIPE_BUF, where a write is split.
    lines = [line(n, size) for n, size in enumerate([100, 5000, 3000, 20000, 9000] * 8)]

    outcomes = put_all(writer, lines)

    assert "dropped" in outcomes and outcomes[0] == "queued"
    assert set(outcomes) == {"queued", "dropped"}
    queued = [text for text, outcome in zip(lines, outcomes) if outcome == "queued"]
    received = b""
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while received.count(b"\n") < len(queued) and time.monotonic() < deadline:
        received += read_available(pipe.read_end)
        time.sleep(0.01)
    assert writer.drain(HANG_GUARD_SECONDS)
    assert received.decode().splitlines() == queued
    for text in received.decode().splitlines():
        json.loads(text)


def test_a_line_larger_than_the_limit_gets_out_when_the_queue_is_empty(pipe) -> None:
    writer = pipe.writer(limit=1024)
    big = line(1, 50_000)

    assert put_all(writer, [big, line(2, 10)]) == ["queued", "dropped"]

    received = b""
    while not received.endswith(b"\n"):
        received += os.read(pipe.read_end, 1 << 16)
    assert received.decode() == big + "\n"
    assert writer.drain(HANG_GUARD_SECONDS)
    assert writer.idle
    assert put_all(writer, [line(3, 10)]) == ["queued"]


def test_drain_and_close_are_bounded_when_the_reader_never_reads(pipe) -> None:
    writer = pipe.writer(limit=1 << 20)
    put_all(writer, [line(n, 10_000) for n in range(5)])

    started = time.monotonic()
    drained = writer.drain(0.2)
    closed = writer.close(0.2)

    assert (drained, closed) == (False, False)
    assert time.monotonic() - started < 5
    assert not writer.idle
    assert put_all(writer, [line(9, 10)]) == ["failed"]


def test_a_reader_that_left_is_found_by_the_line_that_meets_it(pipe) -> None:
    writer = pipe.writer(limit=1 << 20)
    pipe.close_read_end()

    assert put_all(writer, [line(1, 10), line(2, 10)]) == ["failed", "failed"]
    assert writer.error == os.strerror(errno.EPIPE)


def test_a_write_error_reaches_the_loop_that_queued_the_line() -> None:
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        writer = LineWriter(full, limit=1 << 20, name="test-writer")

        async def queue_and_wait() -> tuple[str, str]:
            reported: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            writer.on_error = reported.set_result
            outcome = writer.put(line(1, 10))
            return outcome, await asyncio.wait_for(reported, HANG_GUARD_SECONDS)

        outcome, detail = asyncio.run(queue_and_wait())
    finally:
        os.close(full)

    assert outcome == "queued"
    assert detail == os.strerror(errno.ENOSPC) == writer.error
    assert writer.put(line(2, 10)) == "failed"


def test_an_fd_someone_made_non_blocking_still_gets_every_line(pipe) -> None:
    os.set_blocking(pipe.write_end, False)
    writer = pipe.writer(limit=1 << 20)
    lines = [line(n, 3000) for n in range(20)]

    assert put_all(writer, lines) == ["queued"] * 20

    received = b""
    while received.count(b"\n") < 20:
        received += os.read(pipe.read_end, 1 << 16)
    assert received.decode().splitlines() == lines
    assert writer.drain(HANG_GUARD_SECONDS)


def test_text_that_is_not_unicode_becomes_an_escape_not_an_error(pipe) -> None:
    writer = pipe.writer(limit=1 << 20)
    text = json.dumps({"name": "caf\udce9"}, ensure_ascii=False)

    assert writer.put(text) == "queued"
    assert writer.drain(HANG_GUARD_SECONDS)

    received = read_available(pipe.read_end)
    assert received == b'{"name": "caf\\udce9"}\n'
    assert json.loads(received.decode("utf-8")) == {"name": "caf\udce9"}


EXIT_WITH_A_STUCK_READER = textwrap.dedent(
    """
    import sys
    from memdoor.sinks.line_writer import LineWriter
    writer = LineWriter(1, limit=1 << 20, name="stuck")
    for n in range(4):
        writer.put("x" * 200_000)
    print("queued", file=sys.stderr, flush=True)
    """
)


def test_the_interpreter_exits_while_the_writer_is_stuck_in_a_write() -> None:
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", EXIT_WITH_A_STUCK_READER],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        os.close(write_end)
        try:
            code = child.wait(HANG_GUARD_SECONDS)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        assert child.stderr is not None
        stderr = child.stderr.read()
        child.stderr.close()
        assert code == 0, stderr
        assert stderr == "queued\n"
        # The pipe took what it could hold: the first lines' start, nothing more.
        assert 0 < len(read_available(read_end)) < 4 * 200_000
    finally:
        os.close(read_end)
