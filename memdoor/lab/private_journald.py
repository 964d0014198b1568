"""A real systemd-journald of our own, with no systemd as PID 1 and nothing touched on the host.

What memdoor sends to journald is judged by journald itself: the tests check
the entries and the shipping recipes against it, and the journal budget
benchmark measures the bytes journald really writes, so both need one they can
start, fill and throw away without the test suite or the host's journal.

journald is started in a private mount namespace where a temporary directory is
bind-mounted over /run (and another over /var/log/journal, when the host has
one), so its sockets and journal files all land under the caller's directory.
The calling process stays outside: it reaches the native socket through the
host-side path of that directory, and runs journalctl and systemd-cat inside
the namespace with nsenter, where the paths they have compiled in lead to this
journald.

A drop-in in the private /run keeps journald from reaching the host: no
kernel-log import, no wall messages, no forwarding, and no change to the
kernel's audit setting (journald's default is to switch auditing off). Its own
log goes to journald.log in the caller's directory, which readiness errors quote.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from memdoor.lab.unavailable import LabUnavailable

JOURNALD = "/lib/systemd/systemd-journald"
_TOOLS = ("unshare", "nsenter", "mount", "sh", "journalctl", "systemd-cat")
# sun_path is 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 20.0
_COMMAND_TIMEOUT = 120.0

# Sorted after any host drop-in, so these settings win.
_DROP_IN_NAME = "zz-memdoor-lab.conf"
_DROP_IN = """\
[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
Audit=
"""

# $1: the directory for /run, $2: the one for /var/log/journal, $3: journald.
# unshare and sh both exec, so the pid Popen reports ends up being journald's.
_NAMESPACE_SCRIPT = """\
set -e
mount --bind "$1" /run
if [ -d /var/log/journal ]; then mount --bind "$2" /var/log/journal; fi
exec "$3"
"""


@dataclass(frozen=True)
class RealJournald:
    """A running journald; every path and command here leads to it and nothing else."""

    pid: int
    run_dir: Path
    socket_path: str
    log_path: Path

    def in_namespace(self, argv: Sequence[str]) -> list[str]:
        """argv run in journald's mount namespace (same pid and network namespaces)."""
        return _nsenter(self.pid, argv)

    def sync(self) -> None:
        """Return once journald has written everything sent before the call.

        `journalctl --sync` asks journald (over varlink) to process its queued
        input first, so no polling is needed afterwards.
        """
        result = _run(self.in_namespace(["journalctl", "--sync"]))
        if result.returncode != 0:
            raise AssertionError(
                f"journalctl --sync failed ({result.returncode}): {result.stderr.decode()}"
            )

    def journalctl(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """journalctl over this journald's journal, after a sync; output as bytes."""
        self.sync()
        return _run(self.in_namespace(["journalctl", "--no-pager", *args]))

    def stdout_stream_command(self, argv: Sequence[str], identifier: str) -> list[str]:
        """A command line running argv with stdout and stderr on a journald stream.

        systemd-cat speaks the stdout stream protocol PID 1 uses for
        StandardOutput=journal, so the entries look the same (with the given
        SYSLOG_IDENTIFIER, and LineMax splitting).
        """
        return self.in_namespace(["systemd-cat", f"--identifier={identifier}", "--", *argv])


def _nsenter(pid: int, argv: Sequence[str]) -> list[str]:
    return ["nsenter", f"--target={pid}", "--mount", "--", *argv]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        list(argv),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=_COMMAND_TIMEOUT,
        check=False,
    )


def _check_runnable() -> None:
    if os.geteuid() != 0:
        raise LabUnavailable("a private journald needs root (mount namespace, bind mounts)")
    if not os.access(JOURNALD, os.X_OK):
        raise LabUnavailable(f"{JOURNALD} is missing (Debian package: systemd)")
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabUnavailable(f"missing tools for a private journald: {', '.join(missing)}")


def _processes_in(namespace: os.stat_result) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            found = os.stat(f"/proc/{entry}/ns/mnt")
        except OSError:
            continue
        if (found.st_dev, found.st_ino) == (namespace.st_dev, namespace.st_ino):
            pids.append(int(entry))
    return pids


def _empty_namespace(namespace_fd: int) -> None:
    """Kill what the caller left running in the namespace, so its mounts go away with it.

    Only the caller can have started processes in there (through nsenter). The
    caller holds the namespace open, so its inode cannot be reused by another
    namespace while we compare against it.
    """
    namespace = os.fstat(namespace_fd)
    deadline = time.monotonic() + _STOP_TIMEOUT
    while True:
        pids = _processes_in(namespace)
        if not pids:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} survive in journald's mount namespace")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_ready(process: subprocess.Popen[bytes], run_dir: Path, log_path: Path) -> None:
    """Wait for journald to answer a sync.

    The varlink socket existing under our run_dir shows the bind mount is in
    place; a successful sync shows journald's event loop is serving it.
    """
    varlink = run_dir / "systemd" / "journal" / "io.systemd.journal"
    sync = _nsenter(process.pid, ["journalctl", "--sync"])
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"journald exited with {process.returncode}: {log_path.read_text(errors='replace')}"
            )
        if varlink.is_socket() and _run(sync).returncode == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"journald not ready after {_START_TIMEOUT}s: {log_path.read_text(errors='replace')}"
    )


@contextlib.contextmanager
def running_journald(directory: Path) -> Iterator[RealJournald]:
    """Run a private journald, every file of it under directory, for the duration of the block.

    Raises LabUnavailable when not root or when journald or a needed tool is
    missing. directory must be short enough for the host-side socket path to
    fit in a unix socket address.
    """
    _check_runnable()
    run_dir = directory / "run"
    var_journal = directory / "var-log-journal"
    log_path = directory / "journald.log"
    socket_path = str(run_dir / "systemd" / "journal" / "socket")
    if len(os.fsencode(socket_path)) > _MAX_SOCKET_PATH:
        raise ValueError(f"socket path too long for AF_UNIX, use a shorter tmp dir: {socket_path}")
    drop_in_dir = run_dir / "systemd" / "journald.conf.d"
    drop_in_dir.mkdir(parents=True)
    (drop_in_dir / _DROP_IN_NAME).write_text(_DROP_IN)
    var_journal.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "SYSTEMD_LOG_TARGET": "console",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                _NAMESPACE_SCRIPT,
                "sh",
                str(run_dir),
                str(var_journal),
                JOURNALD,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    namespace_fd = -1
    try:
        _wait_until_ready(process, run_dir, log_path)
        # Held until the end: it pins the namespace for _empty_namespace, and
        # closing it last is what releases the bind mounts.
        namespace_fd = os.open(f"/proc/{process.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        yield RealJournald(process.pid, run_dir, socket_path, log_path)
    finally:
        _stop(process)
        if namespace_fd >= 0:
            try:
                _empty_namespace(namespace_fd)
            finally:
                os.close(namespace_fd)
