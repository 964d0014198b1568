"""One real daemon run with a real OOM kill, shared by the view tests, and the way to run show."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import pytest

from memdoor.lab.python_child import IMPORT_ROOT, module_command
from tests.render.daemon_run import record_daemon_run


@pytest.fixture(scope="session")
def daemon_run(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Every record of a real run: a full-detail server, and a hog the OOM killer ends."""
    return record_daemon_run(tmp_path_factory.mktemp("views"))


@pytest.fixture(scope="session")
def records_file(
    daemon_run: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The run's records as JSON lines, one per line as `memdoor run` writes them."""
    path = tmp_path_factory.mktemp("views-file") / "records.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in daemon_run))
    return path


def run_show(
    args: Sequence[str], env: Optional[dict[str, str]] = None, stdin: Optional[str] = None
) -> subprocess.CompletedProcess[str]:
    """`python -m memdoor show ARGS` as a user runs it, stdout a pipe."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        module_command("memdoor", "show", *args),
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=full_env,
        cwd=IMPORT_ROOT,
        timeout=120,
        check=False,
    )
