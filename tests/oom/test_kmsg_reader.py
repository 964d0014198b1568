from __future__ import annotations

import errno
import os
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

import memdoor
from memdoor.collect.reading import Unreadable
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.workload import MIB
from memdoor.oom.kmsg_reader import KmsgReader
from memdoor.procfs.kmsg import KmsgRecord, OomKillReport, merge_oom_reports, parse_oom_kill

LOG_USER = 1
NOBODY = 65534


@pytest.fixture
def reader() -> Iterator[KmsgReader]:
    opened = KmsgReader.open()
    if isinstance(opened, Unreadable):
        pytest.skip(f"/dev/kmsg is not readable here: {opened.reason}: {opened.detail}")
    with opened:
        yield opened


def write_kmsg(text: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("writing to /dev/kmsg needs root")
    with open("/dev/kmsg", "w") as kmsg:
        kmsg.write(text + "\n")


def read_until(
    reader: KmsgReader, found: Callable[[list[KmsgRecord]], bool], timeout: float = 30.0
) -> list[KmsgRecord]:
    """Everything read until found() is satisfied; waits on the descriptor like an event loop."""
    records: list[KmsgRecord] = []
    deadline = time.monotonic() + timeout
    while not found(records):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"not found in {len(records)} records within {timeout:g} s")
        select.select([reader], [], [], remaining)
        records.extend(reader.read_available())
    return records


def with_message(message: str) -> Callable[[list[KmsgRecord]], bool]:
    return lambda records: any(record.message == message for record in records)


def test_missing_device_is_a_value() -> None:
    opened = KmsgReader.open("/dev/memdoor-no-such-kmsg")

    assert isinstance(opened, Unreadable)
    assert (opened.what, opened.reason) == ("/dev/memdoor-no-such-kmsg", "vanished")


def test_reads_back_a_line_written_after_opening(reader: KmsgReader) -> None:
    tag = f"memdoor-test-{uuid.uuid4()}"
    write_kmsg(tag)

    records = read_until(reader, with_message(tag))

    (mine,) = [record for record in records if record.message == tag]
    # The kernel files what userspace writes under LOG_USER, which is how
    # parse_oom_kill tells injected text from its own reports.
    assert mine.facility == LOG_USER
    assert parse_oom_kill(mine) is None
    assert tag not in [record.message for record in reader.read_available()]


def test_starts_after_the_newest_record(reader: KmsgReader) -> None:
    before = f"memdoor-test-before-{uuid.uuid4()}"
    write_kmsg(before)
    late = KmsgReader.open()
    assert isinstance(late, KmsgReader), late
    with late:
        after = f"memdoor-test-after-{uuid.uuid4()}"
        write_kmsg(after)

        messages = [record.message for record in read_until(late, with_message(after))]

    assert before not in messages
    assert messages.count(after) == 1
    assert read_until(reader, with_message(before))


def unprivileged_python() -> str:
    """An interpreter user nobody may run (a venv under /root is out of its reach)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        try:
            subprocess.run(
                [candidate, "-c", "pass"],
                user=NOBODY,
                group=NOBODY,
                extra_groups=[],
                cwd="/",
                capture_output=True,
                check=True,
            )
        except (OSError, subprocess.CalledProcessError):
            continue
        return candidate
    pytest.skip("no Python interpreter that user nobody can run")


def test_denied_without_cap_syslog_is_a_value() -> None:
    if os.geteuid() != 0:
        pytest.skip("switching to user nobody needs root")
    if Path("/proc/sys/kernel/dmesg_restrict").read_text().strip() != "1":
        pytest.skip("kernel.dmesg_restrict is 0: everyone may read /dev/kmsg")
    package_parent = str(Path(memdoor.__file__).resolve().parent.parent)
    code = (
        "from memdoor.oom.kmsg_reader import KmsgReader\n"
        "opened = KmsgReader.open()\n"
        "print(opened.reason, opened.what)\n"
    )

    result = subprocess.run(
        [unprivileged_python(), "-c", code],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd="/",
        env={"PYTHONPATH": package_parent, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["denied", "/dev/kmsg"]


def test_overwritten_and_unparsable_records_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Overwriting for real means flooding the host's kernel log past its ring
    # buffer, so EPIPE is injected into a pipe standing in for /dev/kmsg (which,
    # like /dev/kmsg here, returns one record per read).
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    real_read = os.read
    epipe_pending = [True]

    def read_with_one_epipe(fd: int, size: int) -> bytes:
        if fd == read_end and epipe_pending:
            epipe_pending.clear()
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        return real_read(fd, size)

    monkeypatch.setattr(os, "read", read_with_one_epipe)
    with KmsgReader(read_end, "pipe") as pipe_reader:
        try:
            os.write(write_end, b"6,10,20,-;after the gap\n")
            first = pipe_reader.read_available()
            os.write(write_end, b"not a record\n")
            second = pipe_reader.read_available()
        finally:
            os.close(write_end)

    assert [record.message for record in first] == ["after the gap"]
    assert second == []
    assert (pipe_reader.overwritten, pipe_reader.unparsable) == (1, 1)
    assert pipe_reader.last_problem is not None
    assert pipe_reader.last_problem.reason == "malformed"


def test_real_cgroup_oom_kill_is_recognised(reader: KmsgReader) -> None:
    with live_memory_cgroup(64 * MIB) as cgroup:
        workload = cgroup.spawn("--grow-until-killed")
        status = workload.proc.wait(timeout=120)
        name = os.path.basename(cgroup.directory)

    def killed(records: list[KmsgRecord]) -> bool:
        reports = (parse_oom_kill(record) for record in records)
        return any(r is not None and r.pid == workload.pid and r.killed for r in reports)

    reports = [
        report
        for report in map(parse_oom_kill, read_until(reader, killed))
        if report is not None and report.pid == workload.pid
    ]
    merged: OomKillReport = reports[0]
    for report in reports[1:]:
        merged = merge_oom_reports(merged, report)

    assert status == -9
    assert merged.killed
    assert merged.cgroup_kill is True
    assert merged.name == os.path.basename(sys.executable)[:15]
    assert merged.anon_rss_kb is not None and merged.anon_rss_kb > 16 * 1024
    # The constraint line is part of the rate-limited OOM header: other kills on
    # this host within the last seconds can suppress it, the Killed line never.
    if "constraint" in merged.evidence:
        assert merged.constraint == "CONSTRAINT_MEMCG"
        assert merged.task_memcg is not None and merged.task_memcg.endswith("/" + name)
        assert merged.oom_memcg == merged.task_memcg
