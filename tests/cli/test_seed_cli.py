"""The seed command line: in-process through main(argv), and as a real `python -m memdoor`."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memdoor import __version__
from memdoor.cli.main import main
from memdoor.cli.parsers import build_seed_parser
from memdoor.cli.seed import EXIT_MISMATCH, SeedWatch
from memdoor.cli.usage import USAGE
from memdoor.collect.identity import read_stat
from memdoor.lab.workload_parent import Workload
from memdoor.procfs.stat import ProcStat
from tests.workload_fixture import SpawnWorkload

VERSION_AND_USAGE = f"memdoor version {__version__}\n{USAGE}\n"
BELOW = "Process memory usage is not equal to or greater than input memory pressure threshold"
FULL_REPORT_SECTIONS = [
    "##### PROCESS BASIC INFORMATION #####",
    "##### PROCESS MEMORY INFORMATION #####",
    "##### PROCESS MEMORY MAPPING INFORMATION #####",
    "##### PROCESS NETWORK CONNECTION INFORMATION #####",
]
# Every run ends by itself (-c) or is ended by the test; this only bounds a hang.
DEADLINE_S = 60


def mem_total_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


@pytest.fixture
def above_one_percent(spawn_workload: SpawnWorkload) -> Workload:
    """A workload with sockets whose RSS is above 1% of this machine's memory."""
    return spawn_workload("--sockets", "--touch-mb", mem_total_mib() // 100 + 16)


def seed_args(workload: Workload, *extra: str) -> list[str]:
    return ["-p", str(workload.pid), "-e", workload.info["exe"], *extra]


def reports(text: str) -> list[str]:
    """Split output into reports, each starting at its Report Time line."""
    parts = text.split("Report Time: ")
    assert parts[0] == "", parts[0]
    return ["Report Time: " + part for part in parts[1:]]


# --- usage -------------------------------------------------------------------


def test_no_arguments_prints_version_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr() == (VERSION_AND_USAGE, "")


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr() == (f"memdoor version {__version__}\n", "")


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr() == (VERSION_AND_USAGE, "")


THRESHOLD_ERROR = "argument -m/--memory-pressure-threshold: must be an integer from 1 to 99"
GOOD = {"-p": "1", "-e": "/sbin/init", "-m": "50", "-i": "1"}


def argv_with(**changes: str) -> list[str]:
    """GOOD with some options replaced; an empty value drops the option."""
    options = {**GOOD, **{f"-{k}": v for k, v in changes.items()}}
    return [part for key, value in options.items() if value for part in (key, value)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (argv_with(m="0"), f"{THRESHOLD_ERROR} (got '0')"),
        (argv_with(m="100"), f"{THRESHOLD_ERROR} (got '100')"),
        (argv_with(m="abc"), f"{THRESHOLD_ERROR} (got 'abc')"),
        (argv_with(m="50.5"), f"{THRESHOLD_ERROR} (got '50.5')"),
        (
            argv_with(e="sbin/init"),
            "argument -e/--exename: must be an absolute path (got 'sbin/init')",
        ),
        (argv_with(i="0"), "argument -i/--interval: must be greater than 0 (got '0')"),
        (argv_with(i="-1"), "argument -i/--interval: must be greater than 0 (got '-1')"),
        (argv_with(i="soon"), "argument -i/--interval: must be a number of seconds (got 'soon')"),
        (argv_with(p=""), "the following arguments are required: -p/--pid"),
        (argv_with(p="0"), "argument -p/--pid: must be a positive integer (got '0')"),
        (argv_with(p="abc"), "argument -p/--pid: must be a positive integer (got 'abc')"),
        ([*argv_with(), "-c", "0"], "argument -c/--count: must be a positive integer (got '0')"),
        # How argparse lists the choices differs between Python versions.
        ([*argv_with(), "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        ([*argv_with(), "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    first, rest = err.split("\n", 1)
    assert first.startswith(f"memdoor: {message}")
    assert rest == f"{USAGE}\n"


# --- in-process runs against a real workload ---------------------------------


def test_two_full_reports(capsys: pytest.CaptureFixture[str], above_one_percent: Workload) -> None:
    workload = above_one_percent
    assert main(seed_args(workload, "-m", "1", "-i", "0.1", "-c", "2")) == 0
    out, err = capsys.readouterr()
    assert err == ""
    found = reports(out)
    assert len(found) == 2
    for report in found:
        assert [line for line in report.splitlines() if line.startswith("#####")][:2] == (
            FULL_REPORT_SECTIONS[:2]
        )
        for section in FULL_REPORT_SECTIONS:
            assert section in report
        assert f"PID: {workload.pid}\n" in report
        assert f"Executable Absolute Path: {workload.info['exe']}\n" in report
        network = report.split("##### PROCESS NETWORK CONNECTION INFORMATION #####")[1]
        for sock in workload.info["sockets"]:
            assert f" {sock['local']} " in network, sock


def test_below_threshold(capsys: pytest.CaptureFixture[str], spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()
    assert main(seed_args(workload, "-m", "99", "-i", "0.1", "-c", "2")) == 0
    out, err = capsys.readouterr()
    assert err == ""
    found = reports(out)
    assert len(found) == 2
    for report in found:
        assert report.splitlines()[1:] == [
            "##### PROCESS BASIC INFORMATION #####",
            f"PID: {workload.pid}",
            f"Executable Absolute Path: {workload.info['exe']}",
            "",
            BELOW,
            "",
        ]


def test_json_lines(capsys: pytest.CaptureFixture[str], above_one_percent: Workload) -> None:
    workload = above_one_percent
    assert main(seed_args(workload, "-m", "1", "-i", "0.1", "-c", "2", "--format", "json")) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        record = json.loads(line)
        assert record["pid"] == workload.pid
        assert record["above_threshold"] is True
        assert record["usage_percent"] >= 1
        assert {"process", "memory", "oom", "tree", "mappings", "connections"} <= record.keys()
        assert record["problems"] == []
        assert {c["inode"] for c in record["connections"]} == {
            s["inode"] for s in workload.info["sockets"]
        }


def test_json_below_threshold(
    capsys: pytest.CaptureFixture[str], spawn_workload: SpawnWorkload
) -> None:
    workload = spawn_workload()
    assert main(seed_args(workload, "-m", "99", "-i", "0.1", "-c", "1", "--format", "json")) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["pid"], record["above_threshold"], record["threshold_percent"]) == (
        workload.pid,
        False,
        99,
    )
    assert "memory" not in record


def test_exe_mismatch(capsys: pytest.CaptureFixture[str], spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()
    argv = ["-p", str(workload.pid), "-e", "/usr/bin/true", "-m", "1", "-i", "0.1"]
    assert main(argv) == EXIT_MISMATCH != 0
    out, _ = capsys.readouterr()
    first, second = out.splitlines()
    assert first.startswith("Report Time: ")
    assert second == f"ERROR: PID {workload.pid} does not match the executable name /usr/bin/true"


def test_json_exe_mismatch(
    capsys: pytest.CaptureFixture[str], spawn_workload: SpawnWorkload
) -> None:
    """JSON consumers get a record for the mismatch; the human message goes to stderr."""
    workload = spawn_workload()
    argv = ["-p", str(workload.pid), "-e", "/usr/bin/true", "-m", "1", "-i", "1"]
    assert main([*argv, "--format", "json"]) == EXIT_MISMATCH
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert (record["pid"], record["exe"], record["error"]) == (
        workload.pid,
        "/usr/bin/true",
        "exe_mismatch",
    )
    assert err == f"ERROR: PID {workload.pid} does not match the executable name /usr/bin/true\n"


def test_reused_pid_is_not_reported_as_the_target(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--sockets")
    stat = read_stat(workload.pid)
    assert isinstance(stat, ProcStat)
    out = io.StringIO()
    watch = SeedWatch(
        build_seed_parser().parse_args(seed_args(workload, "-m", "1", "-i", "1")), out
    )
    # As if the watched process had started one tick earlier and this one took its pid.
    watch.start_ticks = stat.start_ticks - 1
    assert watch.cycle(time.time()) == EXIT_MISMATCH
    text = out.getvalue()
    assert f"ERROR: PID {workload.pid} does not match the executable name" in text
    assert "PROCESS MEMORY INFORMATION" not in text
    assert BELOW not in text


def test_the_first_cycle_learns_the_start_time(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()
    stat = read_stat(workload.pid)
    assert isinstance(stat, ProcStat)
    watch = SeedWatch(
        build_seed_parser().parse_args(seed_args(workload, "-m", "99", "-i", "1")), io.StringIO()
    )
    assert watch.cycle(time.time()) is None
    assert watch.start_ticks == stat.start_ticks


# --- as a real process -------------------------------------------------------


class Seed:
    """`python -m memdoor ...` with its stdout read line by line, never past a deadline."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memdoor", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out = b""

    def read_until(self, marker: bytes) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + DEADLINE_S
        while marker not in self.out:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {marker!r} in {self.out!r}"
            readable, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if readable:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"stdout closed before {marker!r}: {self.out!r}"
                self.out += chunk

    def finish(self) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=DEADLINE_S)
        return self.proc.returncode, (self.out + out).decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def seed_process() -> Iterator[type[Seed]]:
    started: list[Seed] = []

    class Tracked(Seed):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    try:
        yield Tracked
    finally:
        for seed in started:
            seed.kill()


def test_subprocess_no_arguments(seed_process: type[Seed]) -> None:
    assert seed_process().finish() == (2, VERSION_AND_USAGE, "")


def test_subprocess_bad_argument(seed_process: type[Seed]) -> None:
    code, out, err = seed_process(*argv_with(m="100")).finish()
    assert (code, out) == (2, "")
    assert err == f"memdoor: {THRESHOLD_ERROR} (got '100')\n{USAGE}\n"


def test_subprocess_two_full_reports(seed_process: type[Seed], above_one_percent: Workload) -> None:
    code, out, err = seed_process(
        *seed_args(above_one_percent, "-m", "1", "-i", "0.1", "-c", "2")
    ).finish()
    assert (code, err) == (0, "")
    assert len(reports(out)) == 2
    assert all(section in out for section in FULL_REPORT_SECTIONS)


def test_workload_killed_between_cycles(
    seed_process: type[Seed], spawn_workload: SpawnWorkload
) -> None:
    workload = spawn_workload()
    seed = seed_process(*seed_args(workload, "-m", "99", "-i", "0.2"))
    seed.read_until(BELOW.encode())
    workload.stop()
    code, out, err = seed.finish()
    assert code == EXIT_MISMATCH != 0
    assert err == ""
    last = reports(out)[-1].splitlines()
    assert last[0].startswith("Report Time: ")
    assert last[1:] == [
        f"ERROR: PID {workload.pid} does not match the executable name {workload.info['exe']}"
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_end_cleanly(
    seed_process: type[Seed], spawn_workload: SpawnWorkload, signum: signal.Signals
) -> None:
    workload = spawn_workload()
    seed = seed_process(*seed_args(workload, "-m", "99", "-i", "0.2"))
    # Wait for a complete report: before it, the interpreter may still be
    # starting and would die of the signal before memdoor could handle it.
    seed.read_until(BELOW.encode() + b"\n\n")
    seed.proc.send_signal(signum)
    code, out, err = seed.finish()
    assert (code, err) == (0, "")
    assert "Traceback" not in out
    assert out.endswith(BELOW + "\n\n")


def mapping_rows(report: str) -> list[str]:
    block = report.split("##### PROCESS MEMORY MAPPING INFORMATION #####\n")[1]
    return block.split("\n\n")[0].splitlines()


def test_sort_rss_lists_the_largest_resident_mapping_first(
    capsys: pytest.CaptureFixture[str], above_one_percent: Workload
) -> None:
    """The workload's touched block, above 1% of RAM, heads the table; the default
    order is the seed's, by address, without the resident column."""
    workload = above_one_percent
    assert main(seed_args(workload, "-m", "1", "-i", "0.1", "-c", "1", "--sort", "rss")) == 0
    (by_rss,) = reports(capsys.readouterr().out)
    header, *rows = mapping_rows(by_rss)
    assert header.split() == [
        "START", "ADDRESS", "SIZE", "RESIDENT", "PERM", "DEV", "INODE", "FILE", "PATH"
    ]  # fmt: skip
    resident = [int(row.split()[3]) for row in rows if row.split()[3] != "?"]
    assert len(resident) == len(rows) > 10
    assert resident == sorted(resident, reverse=True)
    assert resident[0] >= mem_total_mib() // 100 * 1024
    assert main(seed_args(workload, "-m", "1", "-i", "0.1", "-c", "1")) == 0
    (by_address,) = reports(capsys.readouterr().out)
    header, *rows = mapping_rows(by_address)
    assert "RESIDENT" not in header and len(rows) >= len(resident) - 2
    starts = [int(row.split()[0], 16) for row in rows]
    assert starts == sorted(starts)
