"""Answering systemd-oomd's pre-kill hook: snapshots of the cgroup it is about to kill.

On a notification (memdoor.oom.prekill) every watched process in the cgroup or
below it is snapshotted with its target's sections and written as its
target's prekill_snapshot, and so are the cgroup's UNWATCHED_LARGEST largest
other processes, as daemon records. The notice is kept (memdoor.oom.oomd) so
the oom_killed record that follows names systemd-oomd and links to the
snapshot by its time. Snapshots run in the daemon's worker threads, at most
MAX_SNAPSHOTS per notification; the hook replies after them or after its
budget, whichever comes first, and what is still running is written when done.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import time
from collections.abc import Collection
from typing import Callable, Optional

from memdoor.collect.cgroup_members import cgroup_members, largest
from memdoor.collect.identity import read_stat
from memdoor.collect.reading import Unreadable
from memdoor.emitter import DaemonRecords
from memdoor.oom.oomd import PrekillNotice
from memdoor.oom.prekill import PrekillHook
from memdoor.snapshot import take_snapshot
from memdoor.targets import Targets
from memdoor.vocabulary import ALL_SECTIONS, Section
from memdoor.watch.context import Services

SOCKET_ENV = "MEMDOOR_PREKILL_SOCKET"
SD_LISTEN_FDS_START = 3
UNWATCHED_LARGEST = 3
MAX_SNAPSHOTS = 16
# The reply goes within this: PrekillHookTimeoutSec= is at least 1 s.
REPLY_BUDGET = 0.8


class PrekillResponder:
    def __init__(
        self,
        services: Services,
        targets: Targets,
        records: Callable[[], DaemonRecords],
        redact_cmdline: Callable[[], bool],
    ) -> None:
        self.services = services
        self.targets = targets
        # Through callables: a reload replaces the daemon's records and settings.
        self.records = records
        self.redact_cmdline = redact_cmdline

    async def notified(self, cgroup: str) -> None:
        """Keep the notice, then snapshot the cgroup's processes."""
        snapshots: dict[int, float] = {}
        self.services.oomd.notify(PrekillNotice(cgroup, time.time(), time.monotonic(), snapshots))
        layout = self.services.cgroups
        if layout is None or layout.v2 is None:
            return
        directory = os.path.join(layout.directory(layout.v2), cgroup.lstrip("/"))
        members = await asyncio.to_thread(cgroup_members, directory)
        if isinstance(members, Unreadable):
            return
        watched = {
            placement.process.pid: placement
            for placement in self.targets.placements()
            if placement.live and placement.process.pid in members.pids
        }
        others = await asyncio.to_thread(
            largest, members.pids - watched.keys(), UNWATCHED_LARGEST, self.services.proc
        )
        jobs = [
            self._snapshot(cgroup, pid, placement.process.start_ticks, placement.target, snapshots)
            for pid, placement in list(watched.items())[: MAX_SNAPSHOTS - len(others)]
        ]
        jobs += [self._snapshot(cgroup, pid, None, None, snapshots) for pid in others]
        await asyncio.gather(*jobs)

    async def _snapshot(
        self,
        cgroup: str,
        pid: int,
        start_ticks: Optional[int],
        target: Optional[str],
        snapshots: dict[int, float],
    ) -> None:
        records = None if target is None else self.targets.records_of(target)
        sections: Collection[Section] = ALL_SECTIONS if records is None else records.target.sections
        if start_ticks is None:
            stat = read_stat(pid, self.services.proc)
            if isinstance(stat, Unreadable):
                return
            start_ticks = stat.start_ticks
        snapshot = await asyncio.to_thread(
            take_snapshot, pid, sections, start_ticks, self.services.proc, self.services.cgroups
        )
        if snapshot.identity is None:
            return
        snapshots[pid] = snapshot.taken_at
        if records is not None:
            records.prekill_snapshot(cgroup, snapshot)
        else:
            self.records().prekill_snapshot(cgroup, snapshot, self.redact_cmdline())


def hook_socket() -> tuple[Optional[socket.socket], str]:
    """The listening socket to serve the hook on, and what daemon_started says of it.

    Passed by memdoor@.socket (socket activation), or bound at the path in
    MEMDOOR_PREKILL_SOCKET; neither: the hook is off.
    """
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
        sock = socket.socket(fileno=SD_LISTEN_FDS_START)
        return sock, f"listening on {sock.getsockname()} (socket activation)"
    path = os.environ.get(SOCKET_ENV)
    if not path:
        return None, f"off: no socket passed (memdoor@.socket) and {SOCKET_ENV} unset"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if os.path.exists(path) and stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # left by an earlier run
        sock.bind(path)
        os.chmod(path, 0o666)  # systemd-oomd's user connects; callers are checked by uid
        sock.listen(16)
    except OSError as exc:
        sock.close()
        return None, f"unavailable: {path}: {exc.strerror}"
    return sock, f"listening on {path}"


async def start_prekill_hook(
    services: Services,
    targets: Targets,
    records: Callable[[], DaemonRecords],
    redact_cmdline: Callable[[], bool],
) -> tuple[Optional[PrekillHook], str]:
    """Serve the hook if a socket was given; and what daemon_started says of it."""
    sock, state = hook_socket()
    if sock is None:
        return None, state
    responder = PrekillResponder(services, targets, records, redact_cmdline)
    hook = PrekillHook(responder.notified, REPLY_BUDGET)
    await hook.serve(sock)
    return hook, state
