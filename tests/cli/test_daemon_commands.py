"""`memdoor run`, `check-config` and `demo` through main(argv), as a user types them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from memdoor.cli.main import main
from memdoor.config import load_config
from memdoor.config.problems import RECORDED_PROBLEMS
from tests.record_schema import validate_record

EXAMPLE = Path(__file__).resolve().parents[2] / "etc" / "memdoor" / "example.toml"


def test_run_without_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "--config" in err and "usage:" in err


def test_check_config_prints_the_effective_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    rendered = capsys.readouterr().out
    assert "[daemon]" in rendered and 'name = "cron"' in rendered
    again = tmp_path / "again.toml"
    again.write_text(rendered)
    assert load_config(again) == load_config(EXAMPLE)


def test_check_config_of_a_bad_file_exits_78_with_key_and_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[target]]\nname = "x"\nexe = "relative/path"\n')
    assert main(["check-config", str(bad)]) == 78
    captured = capsys.readouterr()
    assert f"{bad}: target[0]" in captured.err and "exe" in captured.err
    record = json.loads(captured.out)
    validate_record(record)
    assert record["event"] == "config_invalid" and record["errors"][0]["key"].endswith(".exe")


# Two problems per target: threshold out of range and pid of the wrong type.
BAD_TARGETS = 300
# Docker and CRI runtimes split a longer stdout line into several.
RECORD_LINE_LIMIT = 16 * 1024


def check_many_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[list[str], str]:
    """check-config of a file with hundreds of bad targets: stderr's lines, stdout."""
    bad = tmp_path / "many.toml"
    bad.write_text(
        "".join(
            f'[[target]]\nname = "t{index}"\npid = "{index}"\nthreshold = 150\n'
            for index in range(BAD_TARGETS)
        )
    )
    assert main(["check-config", str(bad)]) == 78
    captured = capsys.readouterr()
    return captured.err.splitlines(), captured.out


def test_check_config_of_many_problems_prints_all_and_records_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err_lines, out = check_many_problems(tmp_path, capsys)
    assert len(err_lines) == 2 * BAD_TARGETS
    assert all(len(line) < 200 for line in err_lines)
    assert err_lines[-1].endswith(
        f'target[{BAD_TARGETS - 1}] (name="t{BAD_TARGETS - 1}").threshold: '
        "must be between 1 and 99 (got 150)"
    )
    (line,) = out.splitlines()
    record = json.loads(line)
    validate_record(record)
    assert len(record["errors"]) == RECORDED_PROBLEMS
    assert record["more_errors"] == 2 * BAD_TARGETS - RECORDED_PROBLEMS


def test_check_config_of_many_problems_keeps_the_record_line_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _err_lines, out = check_many_problems(tmp_path, capsys)
    (line,) = out.splitlines()
    assert len(line.encode()) < RECORD_LINE_LIMIT
    more = 2 * BAD_TARGETS - RECORDED_PROBLEMS
    assert json.loads(line)["message"].endswith(f"; … and {more} more")


def test_demo_shows_records_within_seconds() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "memdoor", "demo", "--seconds", "2.5"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for record in records:
        validate_record(record)
    events = [r["event"] for r in records]
    assert events[0] == "daemon_started" and events[-1] == "daemon_stopping"
    assert "target_found" in events and "threshold_crossed" in events
    assert "Traceback" not in result.stderr


def check_config_with_stdout(redirect: str, path: Path) -> subprocess.CompletedProcess[str]:
    """`python -m memdoor check-config PATH` with stdout redirected as a shell would."""
    return subprocess.run(
        ["sh", "-c", f'exec "$0" -m memdoor check-config "$1" {redirect}', sys.executable, path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("redirect", "reason"), [(">&-", "it is closed"), (">/dev/full", "No space left on device")]
)
def test_check_config_says_when_stdout_cannot_be_written(redirect: str, reason: str) -> None:
    result = check_config_with_stdout(redirect, EXAMPLE)
    assert (result.returncode, result.stderr) == (
        74,
        f"memdoor check-config: {EXAMPLE} is valid, but the effective configuration "
        f"cannot be written to standard output: {reason}\n",
    )


def test_check_config_of_a_bad_file_with_stdout_closed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[target]]\nname = "x"\nexe = "relative/path"\n')
    result = check_config_with_stdout(">&-", bad)
    assert result.returncode == 78
    assert f"{bad}: target[0]" in result.stderr and "exe" in result.stderr
    assert "Traceback" not in result.stderr
