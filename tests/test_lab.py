"""memdoor.lab stands on its own: no test framework, any working directory, clear refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.private_journald import running_journald
from memdoor.lab.python_child import IMPORT_ROOT
from memdoor.lab.unavailable import LabUnavailable
from memdoor.lab.workload import MIB
from memdoor.lab.workload_parent import start_workload

LAB_MODULES = (
    "memdoor.lab.daemon_process",
    "memdoor.lab.hostile",
    "memdoor.lab.memory_cgroup",
    "memdoor.lab.private_journald",
    "memdoor.lab.workload",
    "memdoor.lab.workload_parent",
)


def test_the_lab_loads_neither_pytest_nor_the_tests(tmp_path: Path) -> None:
    script = (
        f"import sys\nfor name in {LAB_MODULES!r}: __import__(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest', 'tests')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(IMPORT_ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    assert json.loads(loaded.replace("'", '"')) == []


def test_the_workload_is_this_memdoor_s_wherever_the_parent_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A memdoor package in the parent's working directory that would fail if run.
    decoy = tmp_path / "memdoor" / "lab"
    decoy.mkdir(parents=True)
    (tmp_path / "memdoor" / "__init__.py").write_text("")
    (decoy / "__init__.py").write_text("")
    (decoy / "workload.py").write_text("raise SystemExit('the decoy ran')\n")
    monkeypatch.chdir(tmp_path)

    workload = start_workload("--touch-mb", 1)

    assert workload.info["touched_mb"] == 1
    assert workload.stop() == 0


def test_a_memory_cgroup_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(LabUnavailable) as raised, live_memory_cgroup(64 * MIB):
        pass

    assert str(raised.value) == "creating a memory cgroup needs root"


def test_a_private_journald_needs_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)

    with pytest.raises(LabUnavailable) as raised, running_journald(tmp_path):
        pass

    assert str(raised.value) == "a private journald needs root (mount namespace, bind mounts)"
    assert list(tmp_path.iterdir()) == []
