"""Finding a target's processes: pidfiles as services write them, and exe scans."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from memdoor.collect.identity import read_stat
from memdoor.collect.reading import Unreadable
from memdoor.resolve import (
    CMDLINE_MATCHED_CHARS,
    ExeNarrowing,
    processes_running,
    read_pidfile,
    resolve,
)
from memdoor.vocabulary import PID_MAX_LIMIT
from tests.pidfiles import NOBODY, owned_directory, owned_file
from tests.workload_fixture import SpawnWorkload


def pidfile(directory: Path, content: str) -> str:
    path = directory / "x.pid"
    path.write_text(content)
    return str(path)


@pytest.mark.parametrize("content", ["{pid}", "{pid}\n", "  {pid}  \n", "{pid}\nsecond line\n"])
def test_a_pidfile_names_a_live_process(pidfile_dir: Path, content: str) -> None:
    resolution = read_pidfile(pidfile(pidfile_dir, content.format(pid=os.getpid())))
    assert (resolution.pids, resolution.problem) == ([os.getpid()], None)


# '²' passes str.isdigit(): it once reached int() and raised.
@pytest.mark.parametrize("content", ["", "\n", "abc\n", "0\n", "-5\n", "²\n", "12 34\n", "0x10\n"])
def test_a_damaged_pidfile_is_malformed_not_an_exception(pidfile_dir: Path, content: str) -> None:
    path = pidfile(pidfile_dir, content)
    resolution = read_pidfile(path)
    assert resolution.pids == []
    assert resolution.problem is not None
    assert (resolution.problem.what, resolution.problem.reason) == (path, "malformed")


def test_a_pidfile_naming_a_dead_pid_resolves_to_nothing(pidfile_dir: Path) -> None:
    # Pids are below pid_max, which is at most PID_MAX_LIMIT: no process has this one.
    # (2**22 + 1, used before, is above PID_MAX_LIMIT and so now not a pid at all.)
    resolution = read_pidfile(pidfile(pidfile_dir, f"{PID_MAX_LIMIT}\n"))
    assert (resolution.pids, resolution.problem) == ([], None)


def test_a_missing_pidfile_is_vanished(pidfile_dir: Path) -> None:
    resolution = read_pidfile(str(pidfile_dir / "absent.pid"))
    assert resolution.problem is not None and resolution.problem.reason == "vanished"


def test_exe_scan_finds_every_process_of_that_exe_and_only_those(
    spawn_workload: SpawnWorkload,
) -> None:
    first, second = spawn_workload(), spawn_workload()
    exe = first.info["exe"]
    # Scanned as a daemon that did not start them would scan: this process's own
    # children are memdoor's own to the scan (the test below).
    found = processes_running(exe, own_pid=PID_MAX_LIMIT).pids
    assert {first.pid, second.pid} <= set(found)
    for pid in found:
        assert os.readlink(f"/proc/{pid}/exe") == exe
    assert first.pid not in processes_running("/usr/bin/sleep").pids


def test_a_fixed_pid_resolves_while_it_exists(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()
    assert resolve(workload.pid, None, None).pids == [workload.pid]
    workload.stop()
    assert resolve(workload.pid, None, None).pids == []


def nobodys_pidfile(directory: Path, pid: int) -> str:
    """pid in a pidfile that nobody owns, in a directory nobody owns, as a service
    running as nobody would write it into its RuntimeDirectory=."""
    theirs = owned_directory(directory / "theirs", uid=NOBODY.pw_uid, gid=NOBODY.pw_gid)
    content = f"{pid}\n".encode()
    return str(owned_file(theirs / "app.pid", content, uid=NOBODY.pw_uid, gid=NOBODY.pw_gid))


def start_ticks_of(pid: int) -> int:
    stat = read_stat(pid)
    assert not isinstance(stat, Unreadable), stat
    return stat.start_ticks


def test_with_pidfile_owner_a_process_of_that_user_is_adopted(
    pidfile_dir: Path, nobodys_process: int
) -> None:
    path = nobodys_pidfile(pidfile_dir, nobodys_process)
    resolution = read_pidfile(path, owner="nobody")
    assert (resolution.pids, resolution.problem) == ([nobodys_process], None)
    # The start time of the process whose owner was checked: the supervisor adopts
    # that process alone.
    assert resolution.start_ticks == {nobodys_process: start_ticks_of(nobodys_process)}


def test_with_pidfile_owner_a_process_of_another_user_is_refused(pidfile_dir: Path) -> None:
    path = nobodys_pidfile(pidfile_dir, os.getpid())
    resolution = read_pidfile(path, owner="nobody")
    assert resolution.pids == [] and resolution.problem is not None
    assert (resolution.problem.what, resolution.problem.reason) == (path, "denied")
    assert resolution.problem.detail == (
        f"it names pid {os.getpid()}, a process of root (uid 0): with pidfile_owner only "
        f"processes of nobody (uid {NOBODY.pw_uid}) are adopted"
    )


def test_with_pidfile_owner_even_a_root_owned_pidfile_names_only_that_users_processes(
    pidfile_dir: Path, nobodys_process: int
) -> None:
    root_pidfile = pidfile(pidfile_dir, f"{os.getpid()}\n")
    problem = read_pidfile(root_pidfile, owner="nobody").problem
    assert problem is not None and problem.reason == "denied"
    assert read_pidfile(pidfile(pidfile_dir, f"{nobodys_process}\n"), owner="nobody").pids == [
        nobodys_process
    ]


def test_without_pidfile_owner_the_users_pidfile_is_refused(
    pidfile_dir: Path, nobodys_process: int
) -> None:
    path = nobodys_pidfile(pidfile_dir, nobodys_process)
    resolution = read_pidfile(path)
    assert resolution.pids == [] and resolution.problem is not None
    assert resolution.problem.reason == "denied"
    assert resolution.problem.detail.startswith(
        f"the directory {pidfile_dir}/theirs is owned by nobody (uid {NOBODY.pw_uid}): "
    )


def test_a_pidfile_owner_unknown_at_read_time_is_a_problem_not_an_exception(
    pidfile_dir: Path,
) -> None:
    resolution = read_pidfile(pidfile(pidfile_dir, f"{os.getpid()}\n"), owner="no-such-user-md")
    assert resolution.problem is not None and resolution.problem.reason == "error"
    assert resolution.problem.detail == "pidfile_owner 'no-such-user-md' is not a user on this host"


def test_with_pidfile_owner_a_pid_that_is_not_running_resolves_to_nothing(
    pidfile_dir: Path,
) -> None:
    path = nobodys_pidfile(pidfile_dir, PID_MAX_LIMIT)
    resolution = read_pidfile(path, owner="nobody")
    assert (resolution.pids, resolution.problem) == ([], None)


PYTHON = os.path.realpath(sys.executable)
SLEEPER = "import sys, time; print('ready', flush=True); time.sleep(60)"


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[str]]]:
    """Two python children with distinctive argv, killed afterwards."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SLEEPER, "memdoor-resolve-marker", role, "x" * extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        for role, extra in (("gunicorn-app:main", 0), ("worker", CMDLINE_MATCHED_CHARS))
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline() == "ready\n"
        yield children
    finally:
        for child in children:
            child.kill()
            child.wait()
            assert child.stdout is not None
            child.stdout.close()


def test_an_exe_scan_never_adopts_the_scanning_process_nor_its_children(
    sleepers: list[subprocess.Popen[str]],
) -> None:
    own = processes_running(PYTHON).pids
    assert os.getpid() not in own
    assert not {child.pid for child in sleepers} & set(own)
    # The same scan from a process that is not their ancestor finds them all.
    found = processes_running(PYTHON, own_pid=PID_MAX_LIMIT).pids
    assert {os.getpid(), *(child.pid for child in sleepers)} <= set(found)


def test_a_cmdline_pattern_narrows_an_exe_scan(sleepers: list[subprocess.Popen[str]]) -> None:
    app, worker = sleepers

    def found(pattern: str) -> set[int]:
        narrowing = ExeNarrowing(cmdline=pattern)
        return set(processes_running(PYTHON, narrowing=narrowing, own_pid=PID_MAX_LIMIT).pids)

    assert found("memdoor-resolve-marker gunicorn-app:main") == {app.pid}
    # Matched anywhere in argv joined by single spaces.
    assert found(r"-marker\s+(gunicorn|worker)\b") == {app.pid, worker.pid}
    assert found("^no-such-program ") == set()
    assert found("^" + sys.executable.replace(".", r"\.") + " -c ") >= {app.pid, worker.pid}
    # Only the first CMDLINE_MATCHED_CHARS characters are matched.
    assert found("worker x{100}") == {worker.pid}
    assert found(f"worker x{{{CMDLINE_MATCHED_CHARS}}}") == set()


def cgroup_path_of(pid: int) -> str:
    """The path memdoor narrows by: systemd's placement, else the memory cgroup's."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    paths = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in lines}
    for key in ("", "name=systemd"):
        if paths.get(key, "/") != "/":
            return paths[key]
    memory = [path for controllers, path in paths.items() if "memory" in controllers.split(",")]
    return memory[0] if memory else "/"


def test_a_cgroup_prefix_narrows_an_exe_scan(sleepers: list[subprocess.Popen[str]]) -> None:
    path = cgroup_path_of(os.getpid())
    pids = {child.pid for child in sleepers}

    def found(prefix: str) -> set[int]:
        narrowing = ExeNarrowing(cgroup=prefix)
        return set(processes_running(PYTHON, narrowing=narrowing, own_pid=PID_MAX_LIMIT).pids)

    assert pids <= found(path) and pids <= found("/")
    assert found(path + "/below") & pids == set()
    if path != "/":
        # A prefix ends at a component: "/a.service" does not take "/a.service2".
        assert found(path[:-1]) & pids == set()


def fake_process(proc: Path, pid: int, ppid: int, exe: str, cgroup: str, argv: list[str]) -> None:
    """/proc/PID as the scan reads it: exe link, stat, cmdline and cgroup."""
    directory = proc / str(pid)
    directory.mkdir()
    (directory / "exe").symlink_to(exe)
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    fields[1] = str(ppid)  # after the state
    (directory / "stat").write_text(f"{pid} (fake) {' '.join(fields)}\n")
    (directory / "cmdline").write_bytes(b"\0".join(arg.encode() for arg in argv) + b"\0")
    (directory / "cgroup").write_text(f"0::{cgroup}\n")


def test_a_unit_narrows_an_exe_scan_to_the_processes_systemd_placed_there(
    tmp_path: Path,
) -> None:
    exe = "/usr/bin/app"
    fake_process(tmp_path, 100, 1, exe, "/system.slice/app.service", ["app"])
    fake_process(tmp_path, 101, 100, exe, "/system.slice/app.service/worker", ["app", "-w"])
    fake_process(tmp_path, 102, 1, exe, "/system.slice/app2.service", ["app"])
    fake_process(
        tmp_path,
        103,
        1,
        exe,
        "/user.slice/user-1000.slice/user@1000.service/app.slice/app.service",
        ["app"],
    )
    fake_process(tmp_path, 104, 1, exe, "/system.slice/memdoor@x.service", ["memdoor"])
    fake_process(tmp_path, 105, 104, exe, "/system.slice/memdoor@x.service", ["app"])
    proc = str(tmp_path)

    def found(narrowing: ExeNarrowing) -> list[int]:
        return processes_running(exe, proc, narrowing, own_pid=104).pids

    assert found(ExeNarrowing()) == [100, 101, 102, 103]
    # The owner unit as systemd names it, or the unit in a user's manager.
    assert found(ExeNarrowing(unit="app.service")) == [100, 101, 103]
    assert found(ExeNarrowing(unit="app2.service")) == [102]
    assert found(ExeNarrowing(cgroup="/system.slice/app.service")) == [100, 101]
    assert found(ExeNarrowing(cgroup="/system.slice")) == [100, 101, 102]
    assert found(ExeNarrowing(unit="app.service", cgroup="/system.slice", cmdline="-w$")) == [101]
    assert found(ExeNarrowing(unit="memdoor@x.service")) == []
