"""Send entries to journald over its native socket without ever blocking the daemon.

Why not stdout: journald splits a stdout line longer than LineMax (48 KiB) into
pieces that are never reassembled, and stdout carries no indexed fields. The
native socket keeps a multi-megabyte record as one field of one entry.

Why non-blocking: when journald stalls, its socket queue fills and a blocking
send hangs. The daemon sends from its asyncio loop; a hung send would stop the
watchdog pings and get the daemon killed, so a full queue drops the entry and
counts it instead.

Why memfd: a datagram is limited by the send buffer (about 208 KiB by default,
raised as far as net.core.wmem_max allows) and the kernel needs one contiguous
allocation for most of it, which fails with ENOBUFS for multi-megabyte entries
and under memory pressure, the very moment memdoor reports on. Like libsystemd,
such an entry is written to a sealed memfd and the descriptor is passed instead.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Optional

from memdoor.sinks.journal_protocol import FieldValue, encode_entry

DEFAULT_SOCKET_PATH = "/run/systemd/journal/socket"

# libsystemd asks for 8 MiB; the kernel caps the request at net.core.wmem_max.
_WANTED_SNDBUF = 8 * 1024 * 1024

# EMSGSIZE: larger than the send buffer. ENOBUFS: the kernel could not allocate
# the datagram in one piece. Both are about size, and the memfd path avoids them.
_TOO_BIG_ERRNOS = {errno.EMSGSIZE, errno.ENOBUFS}

# journald refuses an fd it cannot trust not to change under it. The F_SEAL_*
# constants have been in fcntl on Linux since Python 3.8.
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL

SendStatus = Literal["sent", "sent_via_memfd", "dropped_busy", "failed"]


@dataclass(frozen=True)
class SendOutcome:
    """What happened to one entry; detail carries the OS error text when it did not arrive."""

    status: SendStatus
    detail: str = ""


@dataclass
class SendCounts:
    """Running totals the daemon reports, so dropped evidence is visible somewhere."""

    sent: int = 0
    memfd: int = 0
    dropped: int = 0
    failed: int = 0


def _error_text(exc: OSError) -> str:
    return exc.strerror or str(exc)


class JournaldSender:
    """One unconnected datagram socket, addressed by path on every send.

    Sending to the path (rather than connecting once) means a restarted
    journald, which binds a new socket at the same path, is reached by the next
    send with no reconnect logic.
    """

    def __init__(self, socket_path: str = DEFAULT_SOCKET_PATH) -> None:
        self.socket_path = socket_path
        self.counts = SendCounts()
        self._socket: Optional[socket.socket] = None
        self._sndbuf = 0

    def send(self, fields: Mapping[str, FieldValue]) -> SendOutcome:
        """Send one entry; OS failures come back as outcomes, never as exceptions.

        Raises ValueError only for fields that can never be sent (see encode_entry).
        """
        outcome = self._send_payload(encode_entry(fields))
        if outcome.status == "sent":
            self.counts.sent += 1
        elif outcome.status == "sent_via_memfd":
            self.counts.memfd += 1
        elif outcome.status == "dropped_busy":
            self.counts.dropped += 1
        else:
            self.counts.failed += 1
        return outcome

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _send_payload(self, payload: bytes) -> SendOutcome:
        try:
            sock = self._ensure_socket()
        except OSError as exc:
            return SendOutcome("failed", _error_text(exc))
        if len(payload) < self._sndbuf:
            try:
                sock.sendto(payload, self.socket_path)
                return SendOutcome("sent")
            except BlockingIOError as exc:
                return SendOutcome("dropped_busy", _error_text(exc))
            except OSError as exc:
                if exc.errno not in _TOO_BIG_ERRNOS:
                    return SendOutcome("failed", _error_text(exc))
        return self._send_via_memfd(sock, payload)

    def _send_via_memfd(self, sock: socket.socket, payload: bytes) -> SendOutcome:
        try:
            memfd = os.memfd_create("memdoor-journal", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
        except OSError as exc:
            return SendOutcome("failed", _error_text(exc))
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(memfd, view) :]
            fcntl.fcntl(memfd, fcntl.F_ADD_SEALS, _SEALS)
            rights = array.array("i", [memfd])
            # An empty datagram tells journald the entry is in the attached fd.
            sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)], 0, self.socket_path)
            return SendOutcome("sent_via_memfd")
        except BlockingIOError as exc:
            return SendOutcome("dropped_busy", _error_text(exc))
        except OSError as exc:
            return SendOutcome("failed", _error_text(exc))
        finally:
            os.close(memfd)

    def _ensure_socket(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _WANTED_SNDBUF)
                self._sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
            except OSError:
                sock.close()
                raise
            self._socket = sock
        return self._socket
