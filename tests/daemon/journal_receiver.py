"""A datagram socket standing in for journald's native socket, read by a thread.

It takes entries of any size (a memfd passed with an empty datagram included),
so a test can watch what the daemon sends there while its stdout is in trouble.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from memdoor.lab.daemon_process import NotSeenInTime
from memdoor.sinks.journal_protocol import decode_entry


class JournalReceiver:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.settimeout(0.1)
        # (the record, the entry's MEMDOOR_DROPPED_RECORDS or None), in arrival order.
        self.entries: list[tuple[dict[str, Any], bytes | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data, fds, _flags, _address = socket.recv_fds(self.sock, 16 << 20, 1)
            except socket.timeout:
                continue
            except OSError:
                return
            if fds:
                with os.fdopen(fds[0], "rb") as memfd:
                    memfd.seek(0)
                    data = memfd.read()
            fields = decode_entry(data)
            record = json.loads(fields["MEMDOOR_RECORD"])
            self.entries.append((record, fields.get("MEMDOOR_DROPPED_RECORDS")))

    @property
    def records(self) -> list[dict[str, Any]]:
        return [record for record, _dropped in list(self.entries)]

    def events(self) -> list[str]:
        return [record["event"] for record in self.records]

    def wait_record(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.records:
                if predicate(record):
                    return record
            time.sleep(0.02)
        raise NotSeenInTime(f"no matching entry within {timeout}s; got {self.events()}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
