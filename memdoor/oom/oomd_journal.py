"""systemd-oomd's log followed for the reason of each kill (memdoor.oom.oomd_message).

The reason is nowhere else that systemd 252 leaves it: the cgroup's extended
attributes count kills, PID 1's message says only that oomd killed. So memdoor
runs `journalctl --follow` on oomd's unit and reads its JSON lines from the
event loop, never blocking on them. `_SYSTEMD_UNIT` is a trusted field that
journald fills in from the sender's cgroup, so no other process can speak for
oomd. Only the newest reasons are kept, and each line read is bounded: a kill
is decided within seconds of oomd's line, and a line is a few hundred bytes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Optional

from memdoor.collect.reading import Unreadable, unreadable_from_oserror
from memdoor.oom.oomd_message import OomdReason, parse_oomd_message, under

COMMAND = (
    "journalctl",
    "--follow",
    "--lines=0",
    "--quiet",
    "--no-pager",
    "--output=json",
    "--output-fields=MESSAGE",
    "_SYSTEMD_UNIT=systemd-oomd.service",
)
# A reason is looked for within seconds of the kill; kept a little longer.
REASON_SECONDS = 60.0
REASONS_KEPT = 64
# A journal line longer than this is not one of oomd's kill messages: skipped.
LINE_BYTES = 65536
# How long journalctl is given to go at stop before it is killed.
STOP_SECONDS = 1.0


class OomdJournal:
    """The newest reasons systemd-oomd logged, by cgroup."""

    def __init__(self, command: Sequence[str] = COMMAND) -> None:
        self.command = tuple(command)
        self._child: Optional[subprocess.Popen[bytes]] = None
        self.unavailable: Optional[Unreadable] = None
        self._pending = b""
        self._skipping = False
        self._reasons: deque[tuple[OomdReason, float]] = deque(maxlen=REASONS_KEPT)

    @property
    def following(self) -> bool:
        return self._child is not None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            child = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            self.unavailable = unreadable_from_oserror(self.command[0], exc)
            return
        assert child.stdout is not None
        os.set_blocking(child.stdout.fileno(), False)
        self._child = child
        loop.add_reader(child.stdout.fileno(), self._drain, loop)

    def stop(self, loop: asyncio.AbstractEventLoop, exiting: bool = False) -> None:
        """exiting: its output closed, so it is on its way out; else it is told to go."""
        child, self._child = self._child, None
        if child is None:
            return
        assert child.stdout is not None
        loop.remove_reader(child.stdout.fileno())
        child.stdout.close()
        if not exiting:
            child.terminate()
        try:
            child.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def reason_for(self, cgroup_path: str) -> Optional[OomdReason]:
        """The newest recent reason for a kill of this cgroup or of an ancestor of it
        (oomd kills a cgroup with everything below it)."""
        now = time.monotonic()
        for reason, seen in reversed(self._reasons):
            if now - seen < REASON_SECONDS and under(cgroup_path, reason.cgroup):
                return reason
        return None

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        child = self._child
        if child is None or child.stdout is None:
            return
        try:
            data = os.read(child.stdout.fileno(), LINE_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            # Its output closed: journalctl is exiting (a closed journal, a signal).
            self.stop(loop, exiting=True)
            self.unavailable = Unreadable(
                self.command[0], "error", f"ended with exit status {child.returncode}"
            )
            return
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            if not self._skipping:
                self._read_line(line)
            self._skipping = False
        if len(self._pending) > LINE_BYTES:
            self._pending, self._skipping = b"", True

    def _read_line(self, line: bytes) -> None:
        try:
            entry: Any = json.loads(line)
        except ValueError:
            return
        message = entry.get("MESSAGE") if isinstance(entry, dict) else None
        if isinstance(message, str):
            raw = message.encode("utf-8", "surrogatepass")
        elif isinstance(message, list) and all(isinstance(b, int) for b in message):
            # journalctl writes a MESSAGE that is not UTF-8 as its bytes.
            raw = bytes(b & 0xFF for b in message)
        else:
            return
        reason = parse_oomd_message(raw)
        if reason is not None:
            self._reasons.append((reason, time.monotonic()))
