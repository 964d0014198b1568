"""check-config's warnings: valid files that likely do not do what was meant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from memdoor.cli.main import main
from memdoor.cli.parsers import EX_WARNINGS
from memdoor.vocabulary import PID_MAX_LIMIT

PREFIX = "memdoor check-config: warning: "


def check(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[int, list[str], str]:
    path = tmp_path / "memdoor.toml"
    path.write_text(text, encoding="utf-8")
    code = main(["check-config", *options, str(path)])
    out, err = capsys.readouterr()
    return code, err.splitlines(), out


def test_a_file_without_doubts_prints_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        f'[[target]]\nname = "me"\npid = {os.getpid()}\n'
        f'[[target]]\nname = "py"\nexe = "{os.path.realpath(sys.executable)}"\n'
        f'[[target]]\nname = "svc"\npidfile = "{tmp_path}/svc.pid"\n'
    )
    for options in ((), ("--strict",)):
        code, err, out = check(tmp_path, text, capsys, *options)
        assert (code, err) == (0, [])
        assert 'name = "svc"' in out


def test_each_doubt_is_a_warning_by_key_on_stderr_after_the_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        f'[[target]]\nname = "gone"\npid = {PID_MAX_LIMIT}\n'
        '[[target]]\nname = "typo"\nexe = "/usr/sbin/no-such-daemon-memdoor"\n'
        '[[target]]\nname = "later"\npidfile = "/run/no-such-dir-memdoor/app.pid"\n'
    )
    code, err, out = check(tmp_path, text, capsys)
    path = tmp_path / "memdoor.toml"
    assert code == 0
    assert out.startswith("# memdoor effective configuration")
    assert err == [
        f'{PREFIX}{path}: target[0] (name="gone").pid: no process {PID_MAX_LIMIT} is running '
        "now; a pid target watches that process only, and is not found again under a new pid",
        f'{PREFIX}{path}: target[1] (name="typo").exe: no such file: no process can be running it',
        f'{PREFIX}{path}: target[2] (name="later").pidfile: its directory '
        "/run/no-such-dir-memdoor does not exist (yet): nothing can be found until the "
        "service creates it",
    ]
    strict_code, strict_err, strict_out = check(tmp_path, text, capsys, "--strict")
    assert (strict_code, strict_err, strict_out) == (EX_WARNINGS, err, out)
    assert EX_WARNINGS not in (0, 2, 74, 78)


def test_a_file_without_targets_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err, out = check(tmp_path, "[daemon]\nthreshold = 60\n", capsys)
    assert code == 0 and "threshold = 60" in out
    assert err == [
        f"{PREFIX}{tmp_path / 'memdoor.toml'}: no [[target]]: the daemon will start and "
        "watch nothing"
    ]
    assert check(tmp_path, "", capsys, "--strict")[0] == EX_WARNINGS


def test_warnings_go_to_stderr_so_stdout_stays_a_configuration(tmp_path: Path) -> None:
    """As a script uses it: stdout redirected to a file that loads back."""
    path = tmp_path / "memdoor.toml"
    path.write_text(f'[[target]]\nname = "gone"\npid = {PID_MAX_LIMIT}\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "memdoor", "check-config", "--strict", str(path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode == EX_WARNINGS
    assert result.stdout.startswith("# memdoor effective configuration")
    assert PREFIX not in result.stdout and result.stderr.startswith(PREFIX)
