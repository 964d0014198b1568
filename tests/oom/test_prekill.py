"""systemd-oomd's pre-kill hook over a real Unix socket, with a client speaking varlink's
wire format as systemd's sd-varlink does (NUL-terminated JSON), since systemd 260 and
its varlinkctl are not among Debian 12's packages; and with the varlink project's own
client (the `varlink` package on PyPI, its command line), which reads the interface
description the hook serves with its own parser before it calls.

The end-to-end case plays oomd against a real cgroup v2 directory holding a real
process: the reply comes, the notice is kept, and the process is snapshotted.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from memdoor.collect.cgroup import CgroupMounts, find_cgroup_mounts
from memdoor.emitter import DaemonRecords
from memdoor.events import Event
from memdoor.oom.kernel_log import KernelLog
from memdoor.oom.prekill import NOTIFY, PrekillHook, valid_cgroup
from memdoor.prekill_hook import PrekillResponder
from memdoor.pressure import PressureHub
from memdoor.system_memory import MemTotal
from memdoor.targets import Targets
from memdoor.watch.context import Services
from tests.oom.cgroup2_dir import cgroup2_with_child


async def call(path: str, message: dict[str, Any]) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(json.dumps(message).encode() + b"\0")
        await writer.drain()
        reply: dict[str, Any] = json.loads((await reader.readuntil(b"\0"))[:-1])
        return reply
    finally:
        writer.close()


def listening(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "memdoor")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen()
    return sock, path


def test_notify_is_answered_and_named_cgroup_handed_over(tmp_path: Path) -> None:
    told: list[str] = []

    async def scenario() -> list[dict[str, Any]]:
        async def on_notify(cgroup: str) -> None:
            told.append(cgroup)

        hook = PrekillHook(on_notify, 0.8)
        sock, path = listening(tmp_path)
        await hook.serve(sock)
        try:
            return [
                await call(path, {"method": NOTIFY, "parameters": {"cgroup": "/a/b.service"}}),
                await call(path, {"method": NOTIFY, "parameters": {"cgroup": "/a/../etc"}}),
                await call(path, {"method": "io.systemd.oom.Prekill.Veto"}),
                await call(path, {"method": "org.varlink.service.GetInfo"}),
                await call(
                    path,
                    {
                        "method": "org.varlink.service.GetInterfaceDescription",
                        "parameters": {"interface": "io.systemd.oom.Prekill"},
                    },
                ),
            ]
        finally:
            hook.close()

    notify, bad_path, unknown, info, description = asyncio.run(scenario())
    assert notify == {"parameters": {}}
    assert told == ["/a/b.service"]
    assert bad_path["error"] == "org.varlink.service.InvalidParameter"
    assert unknown["error"] == "org.varlink.service.MethodNotFound"
    assert "io.systemd.oom.Prekill" in info["parameters"]["interfaces"]
    assert "method Notify(cgroup: string) -> ()" in description["parameters"]["description"]


def test_the_varlink_projects_own_client_calls_the_hook(tmp_path: Path) -> None:
    told: list[str] = []

    async def scenario() -> list[tuple[int, str, str]]:
        async def on_notify(cgroup: str) -> None:
            told.append(cgroup)

        hook = PrekillHook(on_notify, 0.8)
        sock, path = listening(tmp_path)
        await hook.serve(sock)
        outcomes = []
        try:
            for argv in (
                ["info", f"unix:{path}"],
                ["help", f"unix:{path}/io.systemd.oom.Prekill"],
                ["call", f"unix:{path}/{NOTIFY}", '{"cgroup": "/system.slice/a.service"}'],
            ):
                client = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "varlink.cli",
                    *argv,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await asyncio.wait_for(client.communicate(), 60)
                outcomes.append((client.returncode or 0, out.decode(), err.decode()))
        finally:
            hook.close()
        return outcomes

    info, description, notify = asyncio.run(scenario())
    assert info[0] == 0 and "io.systemd.oom.Prekill" in info[1], info
    assert description[0] == 0, description
    assert "method Notify(cgroup: string) -> ()" in description[1], description
    assert notify[0] == 0 and notify[2] == "", notify
    assert told == ["/system.slice/a.service"]


def test_a_slow_snapshot_does_not_hold_the_reply(tmp_path: Path) -> None:
    async def scenario() -> float:
        async def on_notify(cgroup: str) -> None:
            await asyncio.sleep(30)

        hook = PrekillHook(on_notify, 0.3)
        sock, path = listening(tmp_path)
        await hook.serve(sock)
        started = time.monotonic()
        try:
            reply = await call(path, {"method": NOTIFY, "parameters": {"cgroup": "/x"}})
        finally:
            hook.close()
        assert reply == {"parameters": {}}
        return time.monotonic() - started

    assert asyncio.run(scenario()) < 5.0


def test_a_caller_that_is_neither_root_nor_oomd_is_refused() -> None:
    told: list[str] = []

    async def scenario() -> bytes:
        async def on_notify(cgroup: str) -> None:
            told.append(cgroup)

        hook = PrekillHook(on_notify, 0.8)
        sock, path = listening(Path(directory))
        os.chmod(path, 0o666)
        os.chmod(directory, 0o755)  # pytest's tmp_path is in a directory only root enters
        await hook.serve(sock)
        message = json.dumps({"method": NOTIFY, "parameters": {"cgroup": "/x"}})
        client = (
            "import os,socket;os.setgid(65534);os.setuid(65534);"
            f"s=socket.socket(socket.AF_UNIX);s.connect({path!r});"
            f"s.sendall({message!r}.encode()+bytes(1));print(s.recv(4096).decode())"
        )
        process = await asyncio.create_subprocess_exec(
            "python3", "-c", client, stdout=asyncio.subprocess.PIPE
        )
        out, _ = await process.communicate()
        hook.close()
        return out

    if os.geteuid() != 0:
        pytest.skip("needs root to run the client as nobody")
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:
        assert b"org.varlink.service.PermissionDenied" in asyncio.run(scenario())
    assert told == []


def test_valid_cgroup_paths() -> None:
    assert valid_cgroup("/system.slice/app.service")
    assert not valid_cgroup("system.slice")
    assert not valid_cgroup("/a/./b")
    assert not valid_cgroup(7)


class ListWriter:
    def __init__(self) -> None:
        self.records: list[tuple[Event, dict[str, Any]]] = []

    def write(self, level: str, event: Event, fields: dict[str, Any]) -> None:
        self.records.append((event, fields))


def test_the_cgroups_largest_unwatched_process_is_snapshotted(tmp_path: Path) -> None:
    layout = find_cgroup_mounts()
    assert isinstance(layout, CgroupMounts)
    services = Services(MemTotal(), layout, KernelLog(), PressureHub())
    writer = ListWriter()
    records = DaemonRecords(writer)

    async def scenario(cgroup: str) -> dict[str, Any]:
        responder = PrekillResponder(services, Targets(services), lambda: records, lambda: True)
        hook = PrekillHook(responder.notified, 5.0)
        sock, path = listening(tmp_path)
        await hook.serve(sock)
        try:
            return await call(path, {"method": NOTIFY, "parameters": {"cgroup": cgroup}})
        finally:
            hook.close()

    with cgroup2_with_child() as cgroup:
        reply = asyncio.run(scenario(cgroup.path))
        notice = services.oomd.notice_for(cgroup.path)
        pid = cgroup.child.pid
    assert reply == {"parameters": {}}
    assert notice is not None and pid in notice.snapshots
    [(event, fields)] = writer.records
    assert event is Event.PREKILL_SNAPSHOT
    assert fields["pid"] == pid and fields["target"] is None
    assert fields["prekill_cgroup"] == cgroup.path
    assert fields["process"]["name"] == "sleep"
    assert fields["process"]["cmdline"] == ["sleep"]  # redacted to argv[0]
