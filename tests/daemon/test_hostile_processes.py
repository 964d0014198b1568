"""The real daemon watching processes that name themselves with hostile bytes.

Every case of memdoor.lab.hostile at once: whatever a process puts in its
name, argv, exe path, mapped file names and cgroup, every stdout line is
strict UTF-8 JSON that the schema accepts, every journal entry has one
MESSAGE (a single inert line) and one PRIORITY, no watcher dies, and the
exact bytes come back from the records. A hostile process killed by the OOM
killer still gets its oom_killed record.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from memdoor.lab.daemon_process import DaemonProcess, NotSeenInTime, write_config
from memdoor.lab.hostile import CASES, HostileProcess, hostile_process
from memdoor.lab.memory_cgroup import LiveCgroup, live_memory_cgroup
from memdoor.lab.private_journald import running_journald
from memdoor.lab.workload import MIB
from memdoor.process_text import decode
from tests.hostile_text import (
    is_utf8,
    journal_export_entries,
    strict_json_lines,
    text_bytes,
    unsafe_characters,
)
from tests.record_schema import validate_record

Records = list[dict[str, Any]]


def target(name: str, pid: int, detail: str, threshold: int = 1) -> str:
    return (
        f'[[target]]\nname = "{name}"\npid = {pid}\nthreshold = {threshold}\n'
        f'threshold_base = "cgroup"\ninterval = 0.2\ndetail = "{detail}"\n'
    )


def read_records(path: Path) -> Records:
    """The complete lines so far, each strict UTF-8 JSON (a line being written waits)."""
    data = path.read_bytes()
    return strict_json_lines(data[: data.rfind(b"\n") + 1]) if b"\n" in data else []


def wait_until(
    path: Path, done: Callable[[Records], bool], daemon: DaemonProcess, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(read_records(path)):
            return
        assert daemon.proc.poll() is None, f"the daemon exited: {daemon.stderr}"
        time.sleep(0.1)
    raise NotSeenInTime(f"not within {timeout}s: {[r['event'] for r in read_records(path)]}")


def kept_watching(names: list[str]) -> Callable[[Records], bool]:
    """Each target crossed its threshold and went on sampling afterwards."""

    def done(records: Records) -> bool:
        for name in names:
            events = [r["event"] for r in records if r["target"] == name]
            if "threshold_crossed" not in events:
                return False
            if events[events.index("threshold_crossed") :].count("sample") < 2:
                return False
        return True

    return done


@contextlib.contextmanager
def hostile_processes(tmp_path: Path, cgroup: LiveCgroup) -> Iterator[dict[str, HostileProcess]]:
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(
                hostile_process(name, str(tmp_path), cgroup.directory, ["--touch-mb", "4"])
            )
            for name in sorted(CASES)
        }


@contextlib.contextmanager
def running_daemon(config: Path, stdout: Path) -> Iterator[DaemonProcess]:
    with open(stdout, "wb") as handle:
        daemon = DaemonProcess(config, stdout=handle)
    try:
        yield daemon
    finally:
        assert daemon.stop() == 0, daemon.stderr
        assert "Traceback" not in daemon.stderr, daemon.stderr


def first(records: Records, target_name: str, event: str) -> dict[str, Any]:
    return next(r for r in records if r["target"] == target_name and r["event"] == event)


def expected_escaped(raw: dict[str, Any]) -> set[str]:
    """The keys whose bytes are not UTF-8: exactly what `escaped` must name."""
    return {
        key
        for key, value in raw.items()
        if not all(map(is_utf8, value if isinstance(value, list) else [value]))
    }


def check_process_section(section: dict[str, Any], process: HostileProcess) -> None:
    raw = {"name": process.comm, "exe": process.exe, "cmdline": process.cmdline}
    assert {key: text_bytes(section, key) for key in raw} == raw
    assert set(section.get("escaped", ())) == expected_escaped(raw)


def check_every_record(records: Records) -> None:
    for record in records:
        validate_record(record)
    assert [r for r in records if r["event"] == "watcher_failed"] == []


def test_every_record_is_strict_utf8_json_and_gives_the_bytes_back(tmp_path: Path) -> None:
    stdout = tmp_path / "stdout"
    with live_memory_cgroup(512 * MIB) as cgroup, hostile_processes(tmp_path, cgroup) as processes:
        config = write_config(
            tmp_path / "a.toml",
            "".join(
                target(f"{name}-full", process.pid, "full")
                + target(f"{name}-summary", process.pid, "summary")
                for name, process in processes.items()
            ),
        )
        with running_daemon(config, stdout) as daemon:
            targets = [f"{name}-{detail}" for name in processes for detail in ("full", "summary")]
            wait_until(stdout, kept_watching(targets), daemon)
    records = read_records(stdout)
    check_every_record(records)
    for name, process in processes.items():
        found = first(records, f"{name}-full", "target_found")
        check_process_section(found["process"], process)
        assert text_bytes(found, "cgroup_path").endswith(b"/" + process.case.cgroup)
        full = first(records, f"{name}-full", "threshold_crossed")
        check_process_section(full["process"], process)
        assert text_bytes(full["cgroup"], "path").endswith(b"/" + process.case.cgroup)
        assert text_bytes(full["cgroup"], "limit_path") == cgroup.own.path.encode() + (
            b"/" + Path(cgroup.directory).name.encode()
        )
        mapped = {text_bytes(mapping, "path") for mapping in full["mappings"]}
        for path in process.map_paths:
            # /proc/PID/maps writes a newline in a file's name as \012.
            assert path.replace(b"\n", b"\\012") in mapped
        summary = first(records, f"{name}-summary", "threshold_crossed")
        assert text_bytes(summary["process"], "name") == process.comm
        truncated = set(summary.get("truncated", ()))
        exe = text_bytes(summary["process"], "exe")
        assert same_or_cut(exe, process.exe, "/process/exe" in truncated)
        # A summary keeps whole arguments while they fit; a long one keeps its two ends.
        kept = text_bytes(summary["process"], "cmdline")
        assert 0 < len(kept) <= len(process.cmdline)
        for index, argument in enumerate(kept):
            cut = f"/process/cmdline/{index}" in truncated
            assert same_or_cut(argument, process.cmdline[index], cut), index


def same_or_cut(shown: bytes, whole: bytes, cut: bool) -> bool:
    """shown is whole, or, where the record lists it as cut to fit its budget, whole's
    head and tail around an ellipsis."""
    if not cut:
        return shown == whole
    head, ellipsis, tail = shown.partition("\u2026".encode())
    return bool(ellipsis and head) and whole.startswith(head) and whole.endswith(tail)


def journal_records(export: bytes) -> Records:
    """Each entry's record, after checking the entry holds one line of MESSAGE and one PRIORITY."""
    records = []
    for entry in journal_export_entries(export):
        names = [name for name, _value in entry]
        assert names.count("MESSAGE") == 1 and names.count("PRIORITY") == 1, names
        fields = dict(entry)
        message = fields["MESSAGE"].decode("utf-8")
        assert unsafe_characters(message) == [] and "\n" not in message, message
        records += strict_json_lines(fields["MEMDOOR_RECORD"] + b"\n")
    return records


def test_each_journal_entry_has_one_message_line_and_one_priority(tmp_path: Path) -> None:
    stdout = tmp_path / "stdout"
    with contextlib.ExitStack() as stack:
        journald = stack.enter_context(running_journald(tmp_path))
        cgroup = stack.enter_context(live_memory_cgroup(512 * MIB))
        processes = stack.enter_context(hostile_processes(tmp_path, cgroup))
        config = write_config(
            tmp_path / "a.toml",
            f'[sinks.journald]\nenabled = true\nsocket = "{journald.socket_path}"\n'
            + "".join(target(name, process.pid, "summary") for name, process in processes.items()),
        )
        with running_daemon(config, stdout) as daemon:
            wait_until(stdout, kept_watching(list(processes)), daemon)
        export = journald.journalctl("--output=export", "SYSLOG_IDENTIFIER=memdoor").stdout
    records = read_records(stdout)
    check_every_record(records)
    assert journal_records(export) == records
    messages = [r["message"] for r in records if r["event"] == "target_found"]
    # The name is there to recognise the process by; only the journal line escapes it.
    assert f"({decode(processes['control'].exe)})" in "".join(messages)


OOM_CASES = ["latin1", "lookalike", "newline", "journal_fields"]


def ended(records: Records) -> bool:
    return any(r["event"] in ("oom_killed", "target_gone") for r in records)


@pytest.mark.parametrize("name", OOM_CASES)
def test_a_hostile_process_killed_by_the_oom_killer_gets_its_record(
    name: str, tmp_path: Path
) -> None:
    stdout = tmp_path / "stdout"
    grow = ["--touch-mb", "16", "--grow-mb-per-s", "100", "--grow-to-mb", "4096"]
    with contextlib.ExitStack() as stack:
        cgroup = stack.enter_context(live_memory_cgroup(256 * MIB))
        process = stack.enter_context(hostile_process(name, str(tmp_path), cgroup.directory, grow))
        config = write_config(tmp_path / "a.toml", target("hog", process.pid, "summary", 50))
        with running_daemon(config, stdout) as daemon:
            wait_until(stdout, ended, daemon)
        assert process.proc.wait(10) == -signal.SIGKILL
    records = read_records(stdout)
    check_every_record(records)
    killed = first(records, "hog", "oom_killed")
    assert "kmsg" in killed["kill"]["sources"], killed["kill"]
    assert "cgroup_counter" in killed["kill"]["sources"], killed["kill"]
    assert text_bytes(killed["kill"], "name") == process.comm
    assert text_bytes(killed["kill"], "task_memcg").endswith(b"/" + process.case.cgroup)
    # The counter is read in the cgroup the process chose the name of.
    counter_file = text_bytes(killed["kill"], "cgroup_counter_file")
    assert isinstance(counter_file, bytes)
    assert os.path.dirname(counter_file) == process.cgroup_dir
    check_process_section(killed["process"], process)
    assert killed["last_snapshot"] is not None
    assert text_bytes(killed["last_snapshot"]["process"], "name") == process.comm
