"""Run as memdoor@probe: the shipped unit's sandbox, with ExecStart= swapped for this script.

It does, with the installed interpreter and libraries, the things the daemon does (pydantic
validation, every /proc and cgroup read, the kernel log, a PSI trigger, memfd + SCM_RIGHTS to
journald, sd_notify) and the things the sandbox must forbid, and prints one JSON line of
outcomes, so the test can tell a hardening directive that breaks memdoor from one that does nothing.
Deliberately self-contained (stdlib + pydantic + sdnotify): it checks the sandbox, not the
daemon's code.
"""

from __future__ import annotations

import errno
import fcntl
import json
import mmap
import os
import socket
import sys
from typing import Callable

import pydantic
import sdnotify


class Probe(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True, frozen=True)

    name: str
    threshold: int


def outcome(action: Callable[[], object]) -> str:
    """ "ok", or the errno name the sandbox answered with."""
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok"


def read(path: str) -> Callable[[], bytes]:
    def action() -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    return action


def first_record(path: str) -> Callable[[], bytes]:
    """One non-blocking read of a kernel log device (reading to the end would wait for new
    records forever); a record's shape shows it is the real device, not a stand-in."""

    def action() -> bytes:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            record = os.read(fd, 16384)
        finally:
            os.close(fd)
        if b";" not in record:
            raise OSError(errno.ENODATA, f"not a kernel log record: {record[:60]!r}")
        return record

    return action


def emptiness(path: str) -> str:
    """ "empty" for a file the sandbox replaced with an empty one; "readable" for the real
    thing (one non-blocking read, which on /proc/kmsg would consume a record)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return "empty" if os.read(fd, 4096) == b"" else "readable"
        finally:
            os.close(fd)
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))


def read_fd_links(pid: str) -> list[str]:
    return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]


def psi_trigger() -> None:
    fd = os.open("/proc/pressure/memory", os.O_RDWR | os.O_NONBLOCK)
    try:
        # A 2 s window: shorter ones need CAP_SYS_RESOURCE.
        os.write(fd, b"some 150000 2000000\0")
    finally:
        os.close(fd)


def journal_via_memfd(marker: str) -> None:
    payload = f"MESSAGE={marker}\nMEMDOOR_PROBE=memfd\n".encode()
    fd = os.memfd_create("probe", os.MFD_ALLOW_SEALING | os.MFD_CLOEXEC)
    try:
        os.write(fd, payload)
        seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            fds = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))]
            sock.sendmsg([], fds, 0, "/run/systemd/journal/socket")
    finally:
        os.close(fd)


def writable_executable_mapping() -> None:
    mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC).close()


def main() -> None:
    target, target_cgroup, marker = sys.argv[1], sys.argv[2], sys.argv[3]
    validated = Probe.model_validate({"name": "probe", "threshold": 50})
    results = {
        "uid": os.getuid(),
        "capabilities": next(
            line.split()[1]
            for line in read("/proc/self/status")().decode().splitlines()
            if line.startswith("CapEff:")
        ),
        "pydantic": "ok" if validated.threshold == 50 else "wrong",
        "write_etc": outcome(lambda: os.mkdir("/etc/memdoor-probe")),
        "inet": outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
        "kmsg": outcome(first_record("/dev/kmsg")),
        "proc_kmsg": emptiness("/proc/kmsg"),
        "kallsyms": emptiness("/proc/kallsyms"),
        "wx_mapping": outcome(writable_executable_mapping),
        "psi_trigger": outcome(psi_trigger),
        "journal_memfd": outcome(lambda: journal_via_memfd(marker)),
        "fd_links": outcome(lambda: read_fd_links(target)),
        "exe": outcome(lambda: os.readlink(f"/proc/{target}/exe")),
        # ProtectProc= must not hide the target from the scan that finds `exe` targets.
        "listed": "ok" if target in os.listdir("/proc") else "hidden",
    }
    for name in (
        "status",
        "statm",
        "stat",
        "smaps",
        "smaps_rollup",
        "maps",
        "cmdline",
        "cgroup",
        "oom_score",
        "oom_score_adj",
        "net/tcp",
        "net/unix",
    ):
        results[name] = outcome(read(f"/proc/{target}/{name}"))
    for path in (
        "/proc/meminfo",
        "/proc/pressure/memory",
        "/proc/vmstat",
        f"{target_cgroup}/memory.usage_in_bytes",
        f"{target_cgroup}/memory.limit_in_bytes",
        f"{target_cgroup}/memory.oom_control",
    ):
        results[path] = outcome(read(path))
    print(json.dumps({"marker": marker, "results": results}), flush=True)
    sdnotify.SystemdNotifier().notify("READY=1")


if __name__ == "__main__":
    main()
