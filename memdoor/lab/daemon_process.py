"""The real memdoor daemon run as a child, its records read back as they come.

What the daemon catches is only known from what it writes, so the tests, the
capture benchmark and the demo all run it the way an operator would
(``memdoor run --config PATH``) and read its stdout; a stand-in for systemd's
notify socket lets a caller see what it tells the service manager.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from memdoor.lab.python_child import IMPORT_ROOT, module_command


class NotSeenInTime(AssertionError):
    """What a caller waited for (a record, a notify message) did not come in time.

    An AssertionError, so a test that waited fails as any unmet expectation does;
    a benchmark catches this class and decides for itself.
    """


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def assignments(self, key: str) -> list[tuple[float, str]]:
        """(time, value) of every KEY=value received, in order."""
        found = []
        for when, message in list(self.messages):
            for line in message.split("\n"):
                name, _, value = line.partition("=")
                if name == key:
                    found.append((when, value))
        return found

    def wait_for(self, key: str, value: Optional[str] = None, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(value is None or v == value for _t, v in self.assignments(key)):
                return
            time.sleep(0.02)
        raise NotSeenInTime(f"no {key}={value or '*'} within {timeout}s: {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class DaemonProcess:
    """`python -m memdoor run --config PATH`, its stdout parsed line by line as JSON."""

    def __init__(
        self,
        config: Path,
        env: Optional[dict[str, str]] = None,
        stdout: Any = subprocess.PIPE,
        prefix: tuple[str, ...] = (),
    ) -> None:
        """prefix is a command the daemon runs under, such as setpriv dropping capabilities."""
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("NOTIFY_", "WATCHDOG_", "JOURNAL_"))
        }
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [*prefix, *module_command("memdoor", "run", "--config", str(config))],
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=IMPORT_ROOT,
            text=True,
        )
        self.records: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.stderr = ""
        self._reader: Optional[threading.Thread] = None
        if stdout is subprocess.PIPE:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.records.append(json.loads(line))

    def wait_record(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in list(self.records):
                if predicate(record):
                    return record
            if self.proc.poll() is not None and self._reader is not None:
                self._reader.join(1)
            time.sleep(0.02)
        raise NotSeenInTime(f"no matching record within {timeout}s; got {self.records}")

    def events(self) -> list[str]:
        return [r["event"] for r in self.records]

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL if it does not stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        return code


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
