"""Finding a target's processes: pidfiles as services write them, and exe scans."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memdoor.collect.identity import read_stat
from memdoor.collect.reading import Unreadable
from memdoor.resolve import processes_running, read_pidfile, resolve
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
    found = processes_running(exe).pids
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
