"""The seed command over processes that name themselves with hostile bytes.

A process must not be able to add a line to the operator's report (a forged
"ERROR: PID 1 ...") or drive the terminal, and --format json must stay
strict UTF-8 JSON that gives the exact bytes back.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from memdoor.lab.hostile import CASES, HostileProcess, hostile_process
from memdoor.lab.python_child import IMPORT_ROOT, module_command
from memdoor.process_text import decode, printable
from tests.cli.test_seed_cli import mem_total_mib
from tests.hostile_text import strict_json_lines, text_bytes, unsafe_characters

DEADLINE_S = 60


@pytest.fixture(params=sorted(CASES))
def above_one_percent(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[HostileProcess]:
    touch = ["--touch-mb", str(mem_total_mib() // 100 + 16)]
    with hostile_process(request.param, str(tmp_path), options=touch) as process:
        yield process


def run_seed(process: HostileProcess, *extra: str) -> bytes:
    """One cycle at threshold 1%, so the full report with every section is printed."""
    argv = ["-p", str(process.pid), "-e", process.exe, "-m", "1", "-i", "1", "-c", "1", *extra]
    done = subprocess.run(
        [*map(str.encode, module_command("memdoor")), *map(_arg, argv)],
        cwd=IMPORT_ROOT,
        capture_output=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    return done.stdout


def _arg(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def test_the_text_report_is_valid_text_a_process_cannot_add_lines_to(
    above_one_percent: HostileProcess,
) -> None:
    process = above_one_percent
    text = run_seed(process).decode("utf-8")
    lines = text.split("\n")

    assert unsafe_characters(text) == []
    assert not any(line.startswith(("ERROR", "MESSAGE=", "PRIORITY=")) for line in lines)
    assert "##### PROCESS MEMORY MAPPING INFORMATION #####" in lines
    assert f"Executable Absolute Path: {printable(decode(process.exe))}" in lines
    # The process's own row of the tree: its name, escaped, on one line.
    assert f"{process.pid:<10}{printable(decode(process.comm))}" in lines
    for path in process.map_paths:
        shown = printable(decode(path.replace(b"\n", b"\\012")))
        assert any(line.endswith(" " + shown) for line in lines), shown


def test_the_json_report_is_strict_utf8_and_gives_the_bytes_back(
    above_one_percent: HostileProcess,
) -> None:
    process = above_one_percent
    (report,) = strict_json_lines(run_seed(process, "--format", "json"))

    assert report["above_threshold"] is True
    assert text_bytes(report["process"], "name") == process.comm
    assert text_bytes(report["process"], "exe") == process.exe
    assert text_bytes(report["process"], "cmdline") == process.cmdline
    mapped = {text_bytes(mapping, "path") for mapping in report["mappings"]}
    assert {path.replace(b"\n", b"\\012") for path in process.map_paths} <= mapped
