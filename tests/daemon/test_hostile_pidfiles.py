"""The real daemon against pidfiles an attacker or an unlucky operator left behind.

One daemon, one target per case: each ends in its documented target_unresolved
within a few seconds (the promise is at once; the bound is generous), the file's
content is never written anywhere, the daemon keeps feeding the watchdog, and
SIGTERM stops it at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from memdoor.lab.daemon_process import DaemonProcess, NotifySocket, write_config
from memdoor.vocabulary import PID_MAX_LIMIT
from tests.pidfiles import (
    NOBODY,
    SECRET,
    fifo_released_after,
    owned_directory,
    owned_file,
)
from tests.record_schema import validate_record

BOUND = 5.0


def hostile_cases(home: Path, nobodys_pid: int) -> dict[str, tuple[str, str, str]]:
    """target name -> (pidfile, pidfile_owner or "", the start of the refusal's detail)."""
    me = f"{os.getpid()}\n".encode()
    os.mkfifo(home / "fifo.pid")
    (home / "zero-link.pid").symlink_to("/dev/zero")
    (home / "shadow-link.pid").symlink_to("/etc/shadow")
    owned_file(home / "secret", SECRET, mode=0o600)
    (home / "secret-link.pid").symlink_to(home / "secret")
    owned_file(home / "stranger.pid", me, uid=NOBODY.pw_uid)
    open_dir = owned_directory(home / "open", 0o777)
    owned_file(open_dir / "app.pid", me)
    group_dir = owned_directory(home / "group", 0o775, gid=NOBODY.pw_gid)
    owned_file(group_dir / "app.pid", me)
    owned_file(home / "huge.pid", b"9" * 5000)
    owned_file(home / "big-number.pid", f"{PID_MAX_LIMIT + 1}\n".encode())
    owned_file(home / "garbage.pid", SECRET)
    owned_file(home / "empty.pid", b"")
    theirs = owned_directory(home / "theirs", uid=NOBODY.pw_uid, gid=NOBODY.pw_gid)
    owned_file(theirs / "root.pid", me, uid=NOBODY.pw_uid)
    owned_file(theirs / "nobody.pid", f"{nobodys_pid}\n".encode(), uid=NOBODY.pw_uid)
    not_regular = "not a regular file: a pidfile is read only from a regular file"
    nobody = f"nobody (uid {NOBODY.pw_uid})"
    not_a_pid = "not a pid: "
    return {
        "fifo": (f"{home}/fifo.pid", "", f"a FIFO, {not_regular}"),
        "zero": ("/dev/zero", "", f"a character device, {not_regular}"),
        "zero-link": (f"{home}/zero-link.pid", "", f"a symlink, {not_regular}"),
        "shadow-link": (f"{home}/shadow-link.pid", "", f"a symlink, {not_regular}"),
        "secret-link": (f"{home}/secret-link.pid", "", f"a symlink, {not_regular}"),
        "stranger": (f"{home}/stranger.pid", "", f"the pidfile is owned by {nobody}"),
        "open-dir": (f"{open_dir}/app.pid", "", f"the directory {open_dir} is writable by every"),
        "group-dir": (f"{group_dir}/app.pid", "", f"the directory {group_dir} is writable by the"),
        "huge": (f"{home}/huge.pid", "", f"{not_a_pid}longer than 64 bytes"),
        "big-number": (f"{home}/big-number.pid", "", f"{not_a_pid}8 bytes"),
        "garbage": (f"{home}/garbage.pid", "", f"{not_a_pid}{len(SECRET)} bytes"),
        "empty": (f"{home}/empty.pid", "", f"{not_a_pid}0 bytes"),
        "root-by-nobody": (
            f"{theirs}/root.pid",
            "nobody",
            f"it names pid {os.getpid()}, a process of root (uid 0): with pidfile_owner",
        ),
    }


def target_toml(name: str, pidfile: str, owner: str) -> str:
    owner_line = f'pidfile_owner = "{owner}"\n' if owner else ""
    return f'[[target]]\nname = "{name}"\npidfile = "{pidfile}"\n{owner_line}interval = 0.2\n'


def test_every_hostile_pidfile_ends_in_its_refusal_and_the_daemon_carries_on(
    tmp_path: Path, pidfile_dir: Path, nobodys_process: int
) -> None:
    cases = hostile_cases(pidfile_dir, nobodys_process)
    text = "".join(target_toml(name, *case[:2]) for name, case in cases.items())
    text += target_toml("nobodys", f"{pidfile_dir}/theirs/nobody.pid", "nobody")
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    started = time.monotonic()
    # Should a regression block the daemon on the FIFO, it is released after 10 s and
    # the bound below fails the test instead of hanging it.
    with fifo_released_after(pidfile_dir / "fifo.pid", 10.0):
        daemon = DaemonProcess(write_config(tmp_path / "hostile.toml", text), env=env)
        try:
            for name in cases:
                daemon.wait_record(
                    lambda r, name=name: r["event"] == "target_unresolved" and r["target"] == name
                )
            found = daemon.wait_record(lambda r: r["event"] == "target_found")
            took = time.monotonic() - started
            pings = len(notify.assignments("WATCHDOG"))
            time.sleep(1.5)
            pinged_on = len(notify.assignments("WATCHDOG")) > pings
            asked = time.monotonic()
        finally:
            code = daemon.stop()
            notify.close()
    assert code == 0 and time.monotonic() - asked < BOUND, daemon.stderr
    assert took < BOUND
    assert pinged_on
    assert (found["target"], found["pid"]) == ("nobodys", nobodys_process)
    for name, (pidfile, _owner, detail) in cases.items():
        (record,) = [
            r for r in daemon.records if r["event"] == "target_unresolved" and r["target"] == name
        ]
        (problem,) = record["problems"]
        assert problem["what"] == pidfile, name
        assert problem["detail"].startswith(detail), (name, problem)
    for record in daemon.records:
        validate_record(record)
    written = "".join(daemon.lines) + daemon.stderr
    assert "s3cr3t" not in written
    assert "9" * 100 not in written
    assert "Traceback" not in daemon.stderr
