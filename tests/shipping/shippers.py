"""Running a log shipper against the private journald, and reading back what it wrote.

Shippers read the journal through sd-journal, which finds journal files at the
paths compiled into libsystemd (/run/log/journal, /var/log/journal). Started
inside the private journald's mount namespace (memdoor/lab/private_journald.py) they read
that journald's files and nothing of the host's, with their configuration,
state and output under the test's tmp_path.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

from memdoor.lab.private_journald import RealJournald

# Where every recipe in packaging/shipping writes; tests put a tmp_path file there instead.
RECIPE_OUTPUT = "/var/log/memdoor/records.jsonl"
_STOP_TIMEOUT = 20


def recipe_for_test(recipe: Path, output: Path) -> str:
    """The recipe as shipped, writing to output instead of RECIPE_OUTPUT."""
    text = recipe.read_text(encoding="utf-8")
    assert text.count(RECIPE_OUTPUT) == 1, f"{recipe} should write to {RECIPE_OUTPUT} once"
    return text.replace(RECIPE_OUTPUT, str(output))


@contextlib.contextmanager
def shipper_running(
    journald: RealJournald, argv: Sequence[str], log: Path, env: Optional[Mapping[str, str]] = None
) -> Iterator[subprocess.Popen[bytes]]:
    """argv in journald's mount namespace, in the foreground; SIGTERM (then SIGKILL) on exit."""
    with open(log, "ab") as log_file:
        process = subprocess.Popen(
            journald.in_namespace(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
        )
    try:
        yield process
    finally:
        stop(process, _STOP_TIMEOUT)


def stop(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within timeout; always reaped."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_lines(
    path: Path, count: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    """Until path holds count complete lines; a shipper that exits or stalls fails the test."""
    deadline = time.monotonic() + timeout
    lines = 0
    while time.monotonic() < deadline:
        lines = path.read_bytes().count(b"\n") if path.exists() else 0
        if lines >= count:
            return
        if process.poll() is not None:
            raise AssertionError(
                f"shipper exited with {process.returncode}: {log.read_text(errors='replace')}"
            )
        time.sleep(0.1)
    raise AssertionError(
        f"{path}: {lines} of {count} lines after {timeout} s: {log.read_text(errors='replace')}"
    )


def shipped_records(path: Path) -> list[dict[str, Any]]:
    """One JSON record per line; a line that is not whole JSON fails with its size."""
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AssertionError(f"line {number} ({len(line)} bytes) is not JSON: {exc}") from exc
    return records
