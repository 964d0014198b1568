"""systemd-oomd's pre-kill hook (systemd v260): the varlink server, protocol only.

Before killing a cgroup, systemd-oomd connects to every socket in
/run/systemd/oomd.prekill.hook/ and calls io.systemd.oom.Prekill.Notify with
{"cgroup": "<path from the cgroup2 root>"} (src/shared/varlink-io.systemd.oom.Prekill.c),
then waits until every hook replied or PrekillHookTimeoutSec= passed; a hook
cannot veto the kill. Varlink's wire format: JSON objects, each ended by a NUL
byte, over a Unix stream socket; a call {"method": M, "parameters": {...}} is
answered {"parameters": {...}} or {"error": NAME, "parameters": {...}}, nothing
when it said "oneway". org.varlink.service's GetInfo and GetInterfaceDescription
are answered for varlinkctl.

The socket is reachable by every local user (systemd-oomd runs as its own
user), so a caller is accepted only when its peer credentials say root or the
systemd-oom user: anyone else could otherwise have memdoor blame a later exit
on systemd-oomd. The reply waits for on_notify at most budget seconds, so a
slow snapshot never makes oomd wait out its timeout; messages and connections
are bounded.
"""

from __future__ import annotations

import asyncio
import json
import pwd
import socket
import struct
from collections.abc import Awaitable
from typing import Any, Callable, Optional

import memdoor

INTERFACE = "io.systemd.oom.Prekill"
NOTIFY = f"{INTERFACE}.Notify"
DESCRIPTION = f"""# Prekill notifications from oomd
interface {INTERFACE}

# The cgroup which is going to be killed
method Notify(cgroup: string) -> ()
"""
# The user systemd-oomd runs as (systemd-oomd.service's User=).
OOMD_USER = "systemd-oom"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_CONNECTIONS = 16
# A cgroup path longer than PATH_MAX is no cgroup.
MAX_CGROUP_BYTES = 4096

OnNotify = Callable[[str], Awaitable[None]]
_UCRED = struct.Struct("3i")


def allowed_uids() -> frozenset[int]:
    try:
        return frozenset({0, pwd.getpwnam(OOMD_USER).pw_uid})
    except KeyError:
        return frozenset({0})


def peer_uid(sock: Optional[socket.socket]) -> Optional[int]:
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError:
        return None
    return int(_UCRED.unpack(raw)[1])


def valid_cgroup(value: Any) -> bool:
    """A cgroup path as oomd sends it: absolute, no "." or ".." step, no NUL."""
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        return False
    if len(value.encode("utf-8", "surrogatepass")) > MAX_CGROUP_BYTES:
        return False
    return not any(step in (".", "..") for step in value.split("/"))


def _error(name: str, **parameters: Any) -> dict[str, Any]:
    return {"error": name, "parameters": parameters}


class PrekillHook:
    """Serves io.systemd.oom.Prekill on a listening Unix socket, from the event loop."""

    def __init__(self, on_notify: OnNotify, budget: float) -> None:
        self.on_notify = on_notify
        self.budget = budget
        self.uids = allowed_uids()
        self.server: Optional[asyncio.AbstractServer] = None
        self._connections = 0
        # Notifications still snapshotting after their reply went, kept from the collector.
        self._unfinished: set[asyncio.Future[None]] = set()

    async def serve(self, sock: socket.socket) -> None:
        self.server = await asyncio.start_unix_server(
            self._connection, sock=sock, limit=MAX_MESSAGE_BYTES
        )

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections += 1
        try:
            if self._connections > MAX_CONNECTIONS:
                return
            allowed = peer_uid(writer.get_extra_info("socket")) in self.uids
            while True:
                try:
                    raw = await reader.readuntil(b"\0")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                    return
                if not allowed:
                    await self._send(writer, _error("org.varlink.service.PermissionDenied"))
                    return
                reply = await self._answer(raw[:-1])
                if reply is None:
                    continue
                await self._send(writer, reply)
        except (ConnectionError, OSError):
            return
        finally:
            self._connections -= 1
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(json.dumps(reply, separators=(",", ":")).encode() + b"\0")
        await writer.drain()

    async def _answer(self, raw: bytes) -> Optional[dict[str, Any]]:
        """The reply to one message; None when the caller asked for none."""
        try:
            call = json.loads(raw)
        except ValueError:
            return _error("org.varlink.service.InvalidParameter", parameter="message")
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return _error("org.varlink.service.InvalidParameter", parameter="method")
        parameters = call.get("parameters") or {}
        method = call["method"]
        if method == NOTIFY:
            cgroup = parameters.get("cgroup") if isinstance(parameters, dict) else None
            if not valid_cgroup(cgroup):
                return _error("org.varlink.service.InvalidParameter", parameter="cgroup")
            await self._notified(str(cgroup))
            reply: dict[str, Any] = {"parameters": {}}
        elif method == "org.varlink.service.GetInfo":
            reply = {"parameters": _info()}
        elif method == "org.varlink.service.GetInterfaceDescription":
            reply = _description(parameters)
        else:
            reply = _error("org.varlink.service.MethodNotFound", method=method)
        return None if call.get("oneway") else reply

    async def _notified(self, cgroup: str) -> None:
        """Run on_notify for at most budget seconds; what is left finishes on its own."""
        task = asyncio.ensure_future(self.on_notify(cgroup))
        self._unfinished.add(task)
        task.add_done_callback(self._unfinished.discard)
        await asyncio.wait({task}, timeout=self.budget)


def _info() -> dict[str, Any]:
    return {
        "vendor": "memdoor",
        "product": "memdoor",
        "version": memdoor.__version__,
        "url": "https://memdoor.invalid/",
        "interfaces": ["org.varlink.service", INTERFACE],
    }


def _description(parameters: Any) -> dict[str, Any]:
    interface = parameters.get("interface") if isinstance(parameters, dict) else None
    if interface != INTERFACE:
        return _error("org.varlink.service.InterfaceNotFound", interface=interface)
    return {"parameters": {"description": DESCRIPTION}}
