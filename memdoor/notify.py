"""sd_notify through the sdnotify package, with the failures it hides made visible,
and the watchdog fed from the daemon's loop.

sdnotify swallows every exception unless debug=True and drops non-latin-1 text
(journald-and-notify.md). We run it in debug mode, keep STATUS ASCII, and turn
a failure into one report instead of silence or a crash. Its socket is made
non-blocking: a service manager that stopped reading costs a message, not the
loop. Without NOTIFY_SOCKET every call is a no-op, so the daemon runs the same
outside systemd.
"""

from __future__ import annotations

import asyncio
import os
import time
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
                self._notifier.socket.setblocking(False)
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


def watchdog_usec() -> Optional[int]:
    """The watchdog timeout systemd set for this process (WATCHDOG_USEC), or None.

    WATCHDOG_PID, when set, names the process systemd expects pings from; a
    child that inherited the environment must not ping on the parent's behalf.
    """
    usec = decimal(os.environ.get("WATCHDOG_USEC", ""))
    pid = os.environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid is not None and pid != str(os.getpid()):
        return None
    return usec


# Names of the targets that made no progress within an allowance, at a monotonic time.
StaleTargets = Callable[[float, float], list[str]]


class Watchdog:
    """Pings every half WATCHDOG_USEC while `[daemon] watchdog` is on, from the loop.

    Turned off (at start or by a reload) while systemd has a watchdog armed, it
    disarms it with WATCHDOG_USEC=0 rather than just going quiet, which would
    get the daemon killed; turned on again, it re-arms it with systemd's value.
    """

    def __init__(self, notifier: Notifier, stale: StaleTargets) -> None:
        self.notifier = notifier
        self.usec = watchdog_usec()
        self._stale = stale
        self._task: Optional[asyncio.Task[None]] = None
        self._disarmed = False

    def set_enabled(self, enabled: bool) -> None:
        """Start or stop feeding; nothing to do when systemd asked for no watchdog."""
        if self.usec is None:
            return
        if enabled and self._task is None:
            if self._disarmed:
                self.notifier.send(f"WATCHDOG_USEC={self.usec}")
                self._disarmed = False
            self._task = asyncio.get_running_loop().create_task(self._feed(self.usec / 2_000_000))
        elif not enabled and not self._disarmed:
            self.stop()
            self.notifier.send("WATCHDOG_USEC=0")
            self._disarmed = True

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _feed(self, period: float) -> None:
        """Ping only while every supervisor and watcher made progress recently.

        A loop that is blocked never gets here; a target task stuck (a /proc read
        that never returns in a worker thread) shows as stale. Either way the
        pings stop and systemd restarts the daemon after WatchdogSec.
        """
        while True:
            stale = self._stale(time.monotonic(), period)
            if stale:
                self.notifier.status(f"STALLED: no progress on {', '.join(stale)}")
            else:
                self.notifier.watchdog()
            await asyncio.sleep(period)
