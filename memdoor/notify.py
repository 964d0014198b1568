"""sd_notify through the sdnotify package, with the failures it hides made visible.

sdnotify swallows every exception unless debug=True and drops non-latin-1 text
(journald-and-notify.md). We run it in debug mode, keep STATUS ASCII, and turn
a failure into one report instead of silence or a crash. Without NOTIFY_SOCKET
every call is a no-op, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import sdnotify

from memdoor.vocabulary import decimal, monotonic_usec

# PID 1 reads at most 4096 bytes per datagram; a status line is far shorter.
MAX_STATUS = 1024


class Notifier:
    def __init__(self, on_failure: Callable[[str], None]) -> None:
        self._on_failure = on_failure
        self._failed = False
        self._notifier: Optional[sdnotify.SystemdNotifier] = None
        if os.environ.get("NOTIFY_SOCKET"):
            try:
                self._notifier = sdnotify.SystemdNotifier(debug=True)
            except OSError as exc:
                self._report(f"cannot connect to NOTIFY_SOCKET: {exc}")

    def send(self, *assignments: str) -> None:
        if self._notifier is None:
            return
        try:
            self._notifier.notify("\n".join(assignments))
        except OSError as exc:
            self._report(f"sd_notify failed: {exc}")

    def ready(self, status: str) -> None:
        self.send("READY=1", status_assignment(status))

    def status(self, status: str) -> None:
        self.send(status_assignment(status))

    def reloading(self) -> None:
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def _report(self, message: str) -> None:
        if not self._failed:
            self._failed = True
            self._on_failure(message)


def status_assignment(status: str) -> str:
    text = status.encode("ascii", "replace").decode("ascii").replace("\n", " ")
    return f"STATUS={text[:MAX_STATUS]}"


def watchdog_interval() -> Optional[float]:
    """Seconds between pings (half of WATCHDOG_USEC), or None when no watchdog is ours.

    WATCHDOG_PID, when set, names the process systemd expects pings from; a
    child that inherited the environment must not ping on the parent's behalf.
    """
    usec = decimal(os.environ.get("WATCHDOG_USEC", ""))
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid is not None and pid != str(os.getpid()):
        return None
    return usec / 2_000_000
