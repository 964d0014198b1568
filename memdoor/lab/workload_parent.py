"""The parent side of the lab workload: start it, wait for its ready line, stop and reap it.

Apart from :mod:`memdoor.lab.workload` itself, which must stay one standalone,
standard-library-only file: this side runs in memdoor's own process (a test, a
benchmark, the demo) and starts the workload as a module of the same memdoor.
"""

from __future__ import annotations

import functools
import json
import os
import select
import subprocess
import tempfile
import time
from typing import IO, Optional, Union

from memdoor.lab.python_child import IMPORT_ROOT, module_command
from memdoor.lab.workload import ReadyInfo


class WorkloadStartError(RuntimeError):
    """The workload exited or stayed silent instead of printing its ready line."""


class Workload:
    """A running workload as its parent sees it."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: IO[bytes], info: ReadyInfo):
        self.proc = proc
        self.pid = proc.pid
        self.info = info
        self._stderr: Optional[IO[bytes]] = stderr
        self._stderr_text = ""

    def stderr_text(self) -> str:
        """What the workload wrote to stderr (a traceback, if it failed)."""
        if self._stderr is not None:
            self._stderr.seek(0)
            self._stderr_text = self._stderr.read().decode(errors="replace")
        return self._stderr_text

    def stop(self, grace: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps. Idempotent.

        Returns the exit status as Popen reports it: 0 for a clean exit,
        -signal if a signal ended it.
        """
        try:
            return _end_process(self.proc, grace)
        finally:
            self.stderr_text()
            if self._stderr is not None:
                self._stderr.close()
                self._stderr = None


def _end_process(proc: subprocess.Popen[bytes], grace: float) -> int:
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                return proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait(grace)
    finally:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def _read_ready_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """Read up to the first newline without ever blocking past ``timeout``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WorkloadStartError(f"no ready line within {timeout:g} s")
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkloadStartError("stdout closed before the ready line")
            data += chunk
    return data.split(b"\n", 1)[0]


def _join_cgroup(cgroup: str) -> None:
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as procs:
        procs.write(str(os.getpid()))


def start_workload(
    *args: Union[str, int, float],
    cgroup: Optional[str] = None,
    ready_timeout: float = 60.0,
) -> Workload:
    """Start ``python -m memdoor.lab.workload args`` and wait for its ready line.

    ``cgroup`` is a cgroup directory the child joins before it execs, so every
    page it ever touches is charged there (v1 does not move charges made
    before a move). On failure the child is killed and reaped, and the error
    carries its exit status and stderr.
    """
    options = [str(arg) for arg in args]
    # A file, not a pipe: nobody reads stderr while the workload runs, and a
    # full pipe would block it. The Workload owns it from here on.
    stderr = tempfile.TemporaryFile(prefix="workload-stderr-")  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            module_command("memdoor.lab.workload", *options),
            cwd=IMPORT_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            preexec_fn=None if cgroup is None else functools.partial(_join_cgroup, cgroup),
        )
        try:
            line = _read_ready_line(proc, ready_timeout)
            info: ReadyInfo = json.loads(line)
        except (WorkloadStartError, ValueError) as exc:
            status = _end_process(proc, grace=10.0)
            stderr.seek(0)
            raise WorkloadStartError(
                f"workload {' '.join(options) or '(no options)'}: {exc}; "
                f"exit status {status}; stderr:\n"
                f"{stderr.read().decode(errors='replace') or '(empty)'}"
            ) from exc
        except BaseException:
            _end_process(proc, grace=10.0)
            raise
    except BaseException:
        stderr.close()
        raise
    return Workload(proc, stderr, info)
