"""The fleet path with systemd's own tools: hosts upload their journals to one collector.

Each "host" is a private journald (memdoor/lab/private_journald.py) started in a UTS
namespace of its own, so its entries carry their own _HOSTNAME, plus a network
namespace joined to the collector's by a veth pair on a bridge. Each host runs
the real daemon against a real OOM kill in a memory cgroup, then
systemd-journal-upload, in the host's network namespace, sends that host's
journal files to systemd-journal-remote, which listens on the collector's
address in the collector's namespace and writes one journal per host. The
collector's journal must hold every record of every host exactly once, told
apart by _HOSTNAME, the multi-MB ones whole.

The addresses exist only inside the namespaces the test creates; all of them,
and every process and directory, are gone afterwards.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from memdoor.lab.private_journald import RealJournald, running_journald
from tests.shipping.real_records import MANY_MAPPINGS, Watch, record_oom_kill
from tests.shipping.shippers import stop

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
JOURNAL_UPLOAD = "/lib/systemd/systemd-journal-upload"
SUBNET = "10.213.0"
COLLECTOR_ADDRESS = f"{SUBNET}.1"
PORT = 19532
_CLONE_NEWUTS = 0x04000000
_TIMEOUT = 60


def run(argv: Sequence[str]) -> str:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=_TIMEOUT, check=False
    )
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}"
    return result.stdout


def skip_unless_runnable() -> None:
    if os.geteuid() != 0:
        pytest.skip("network and UTS namespaces need root")
    for binary, package in (
        (JOURNAL_REMOTE, "systemd-journal-remote"),
        (JOURNAL_UPLOAD, "systemd-journal-remote"),
    ):
        if not os.access(binary, os.X_OK):
            pytest.skip(f"{binary} is missing (Debian package: {package})")
    if shutil.which("ip") is None:
        pytest.skip("ip is missing (Debian package: iproute2)")


class Namespaces:
    """Named network namespaces (ip netns) created by this test, deleted with what runs in them."""

    def __init__(self) -> None:
        self.prefix = f"memdoor-{uuid.uuid4().hex[:8]}"
        self.names: list[str] = []

    def add(self, role: str) -> str:
        name = f"{self.prefix}-{role}"
        run(["ip", "netns", "add", name])
        self.names.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def delete_all(self) -> None:
        for name in reversed(self.names):
            pids = subprocess.run(
                ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            run(["ip", "netns", "delete", name])
        self.names.clear()


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    skip_unless_runnable()
    created = Namespaces()
    try:
        yield created
    finally:
        created.delete_all()
    assert not [n for n in run(["ip", "netns", "list"]).split() if n.startswith(created.prefix)]


def connect_host(collector: str, host: str, number: int) -> str:
    """A veth pair from host to the collector's bridge; returns the host's address."""
    address = f"{SUBNET}.{number}"
    peer = f"to{number}"
    run(f"ip -n {host} link add eth0 type veth peer name {peer} netns {collector}".split())
    run(["ip", "-n", collector, "link", "set", peer, "master", "br0", "up"])
    run(["ip", "-n", host, "addr", "add", f"{address}/24", "dev", "eth0"])
    run(["ip", "-n", host, "link", "set", "eth0", "up"])
    return address


def make_collector(namespaces: Namespaces) -> str:
    collector = namespaces.add("collector")
    run(["ip", "-n", collector, "link", "add", "br0", "type", "bridge"])
    run(["ip", "-n", collector, "addr", "add", f"{COLLECTOR_ADDRESS}/24", "dev", "br0"])
    run(["ip", "-n", collector, "link", "set", "br0", "up"])
    return collector


def _enter_new_uts_namespace(hostname: str) -> None:
    """unshare(CLONE_NEWUTS) and sethostname, for the calling thread only."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWUTS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")
    name = hostname.encode()
    if libc.sethostname(name, len(name)) != 0:
        raise OSError(ctypes.get_errno(), f"sethostname({hostname})")


@contextlib.contextmanager
def journald_named(tmp_path: Path, hostname: str) -> Iterator[RealJournald]:
    """running_journald, but journald runs in a UTS namespace whose hostname is hostname.

    Namespaces belong to threads: a thread that unshares its UTS namespace and
    then starts journald passes that namespace on to journald alone, while the
    test process keeps the host's. The thread ends right after the start.
    """
    stack = contextlib.ExitStack()

    def start() -> RealJournald:
        _enter_new_uts_namespace(hostname)
        return stack.enter_context(running_journald(tmp_path))

    with stack, concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        journald = pool.submit(start).result()
        pool.shutdown()
        yield journald


@contextlib.contextmanager
def journal_remote(collector: str, output: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                collector,
                JOURNAL_REMOTE,
                f"--listen-http={COLLECTOR_ADDRESS}:{PORT}",
                f"--output={output}/",
                "--split-mode=host",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + _TIMEOUT
        while not run(["ip", "netns", "exec", collector, "ss", "-Hltn", f"sport = :{PORT}"]):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, "journal-remote never listened"
            time.sleep(0.05)
        yield process
    finally:
        stop(process, _TIMEOUT)


def upload(host: str, journald: RealJournald, state: Path) -> None:
    """systemd-journal-upload from the host's namespace: the whole journal, then exit."""
    journal_dir = journald.run_dir / "log" / "journal"
    journald.sync()
    run(
        [
            "ip",
            "netns",
            "exec",
            host,
            JOURNAL_UPLOAD,
            f"--url=http://{COLLECTOR_ADDRESS}:{PORT}",
            f"--directory={journal_dir}",
            f"--save-state={state}",
            "--follow=no",
        ]
    )


@dataclass(frozen=True)
class Host:
    name: str
    records: list[dict[str, Any]]


def collector_records(output: Path, *matches: str) -> list[dict[str, Any]]:
    text = run(
        [
            "journalctl",
            "--no-pager",
            f"--directory={output}",
            *matches,
            "--output=cat",
            "--output-fields=MEMDOOR_RECORD",
        ]
    )
    return [json.loads(line) for line in text.splitlines()]


def collector_entries(output: Path, *matches: str) -> list[dict[str, Any]]:
    text = run(
        ["journalctl", "--no-pager", f"--directory={output}", *matches, "--output=json", "--all"]
    )
    return [json.loads(line) for line in text.splitlines()]


def wait_for_collector(output: Path, hosts: Sequence[Host]) -> None:
    """Until the collector holds as many memdoor entries as the hosts sent."""
    expected = sum(len(host.records) for host in hosts)
    deadline = time.monotonic() + _TIMEOUT
    got = 0
    while time.monotonic() < deadline:
        if any(output.glob("*.journal")):
            got = len(collector_records(output, "SYSLOG_IDENTIFIER=memdoor"))
            if got >= expected:
                return
        time.sleep(0.2)
    raise AssertionError(f"collector has {got} of {expected} memdoor entries")


def test_two_hosts_oom_kills_reach_one_collector_whole_and_apart(
    tmp_path: Path, namespaces: Namespaces
) -> None:
    collector = make_collector(namespaces)
    output = tmp_path / "collector"
    output.mkdir()
    hosts: list[Host] = []
    addresses: list[str] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(journal_remote(collector, output, tmp_path / "journal-remote.log"))
        for number, (name, watch, mappings) in enumerate(
            [("alpha", Watch("app", "full"), MANY_MAPPINGS), ("beta", Watch("app"), 0)], start=2
        ):
            host_ns = namespaces.add(name)
            addresses.append(connect_host(collector, host_ns, number))
            host_tmp = tmp_path / name
            host_tmp.mkdir()
            journald = stack.enter_context(journald_named(host_tmp, name))
            oom = record_oom_kill(host_tmp, journald.socket_path, [watch], mappings)
            upload(host_ns, journald, host_tmp / "upload.state")
            hosts.append(Host(name, oom.records))
        wait_for_collector(output, hosts)

    killed = collector_entries(output, "MEMDOOR_EVENT=oom_killed")
    assert sorted(entry["_HOSTNAME"] for entry in killed) == ["alpha", "beta"]
    for host in hosts:
        shipped = collector_records(output, f"_HOSTNAME={host.name}", "SYSLOG_IDENTIFIER=memdoor")
        assert shipped == host.records, host.name
    alpha_kill = next(e for e in killed if e["_HOSTNAME"] == "alpha")
    assert len(alpha_kill["MEMDOOR_RECORD"]) > 2_000_000
    assert json.loads(alpha_kill["MEMDOOR_RECORD"])["last_snapshot"]["mappings"]
    # --split-mode=host names each file after the sender's address, not its hostname.
    assert {p.name for p in output.iterdir()} == {
        f"remote-{host_address}.journal" for host_address in addresses
    }
