"""The hostile helper really is what each case says, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from memdoor.lab.hostile import CASES, MODULE, hostile_process
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.python_child import IMPORT_ROOT, module_command
from memdoor.lab.workload import MIB


def proc_bytes(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_process_names_itself_with_the_case_s_bytes(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    with live_memory_cgroup(256 * MIB) as cgroup:
        with hostile_process(name, str(tmp_path), cgroup.directory) as process:
            pid = process.pid
            assert proc_bytes(pid, "cmdline")[:-1].split(b"\0") == process.cmdline
            assert process.cmdline[0] == case.argv[0]
            assert proc_bytes(pid, "comm") == case.comm[:15] + b"\n"
            assert os.readlink(f"/proc/{pid}/exe".encode()) == process.exe
            assert os.path.basename(process.exe) == case.exe
            maps = proc_bytes(pid, "maps")
            assert [os.path.basename(path) for path in process.map_paths] == list(case.maps)
            for path in process.map_paths:
                # The kernel writes a newline in a mapped file's name as \012.
                assert path.replace(b"\n", b"\\012") in maps
            assert process.cgroup_dir is not None
            assert process.cgroup_dir.endswith(b"/" + case.cgroup)
            lab_cgroup = os.path.basename(cgroup.directory).encode()
            cgroups = proc_bytes(pid, "cgroup").split(b"\n")
            assert any(line.endswith(b"/%s/%s" % (lab_cgroup, case.cgroup)) for line in cgroups)
        assert not os.path.exists(process.cgroup_dir)
    assert list(tmp_path.iterdir()) == []


def test_run_alone_it_removes_its_own_files_on_sigterm(tmp_path: Path) -> None:
    with subprocess.Popen(
        module_command(MODULE, "--case", "latin1"), cwd=IMPORT_ROOT, stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    directory = os.path.dirname(bytes.fromhex(ready["maps"][0]))
    assert ready["pid"] == proc.pid
    assert os.path.basename(directory).startswith(b"memdoor-hostile-")
    assert not os.path.exists(directory)
