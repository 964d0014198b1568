"""The test workload and the ss helpers, checked against the kernel itself.

Every other test trusts that a workload holds what its ready line says; these
tests are why that trust is earned. /proc/net is read here with a few lines of
independent code on purpose: memdoor's own parser is what later tests judge
with these helpers, so it cannot be the judge here.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memdoor.lab.workload import MIB, SocketInfo, parse_args
from memdoor.lab.workload_parent import WorkloadStartError, start_workload
from memdoor.procfs.errors import ParseError
from tests.ss import Endpoint, kernel_state, needs_ss, parse_ss_line, ss_connections, ss_sockets
from tests.workload_fixture import SpawnWorkload

# The workload's state names (see memdoor/lab/workload.py) as ss prints them.
WORKLOAD_TO_SS_STATE = {"LISTEN": "LISTEN", "ESTABLISHED": "ESTAB", "UNCONN": "UNCONN"}

# include/net/tcp_states.h, which /proc/net/{tcp,udp}* print in hex.
KERNEL_STATE_NUMBERS = {"ESTABLISHED": 0x01, "CLOSE": 0x07, "LISTEN": 0x0A}

NET_TABLES = {"tcp": ("tcp", 4), "tcp6": ("tcp", 6), "udp": ("udp", 4), "udp6": ("udp", 6)}


def status_kib(pid: int, field: str) -> int:
    """One ``Field:  N kB`` line of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise AssertionError(f"/proc/{pid}/status has no {field}")


def maps_lines(pid: int) -> int:
    return Path(f"/proc/{pid}/maps").read_bytes().count(b"\n")


def fd_socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def proc_net_rows(pid: int) -> dict[int, tuple[str, int, int, int]]:
    """inode -> (table, state number, local port, remote port) from /proc/PID/net.

    Row layout: ``sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...``
    with addresses as HEX:PORTHEX. Inode 0 marks rows no fd owns (TIME_WAIT).
    """
    rows = {}
    for table in NET_TABLES:
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            inode = int(fields[9])
            if inode:
                local_port = int(fields[1].split(":")[1], 16)
                remote_port = int(fields[2].split(":")[1], 16)
                rows[inode] = (table, int(fields[3], 16), local_port, remote_port)
    return rows


def port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_touch_mb_makes_private_anonymous_memory_resident(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--touch-mb", 64)

    assert workload.info["touched_mb"] == 64
    assert status_kib(workload.pid, "RssAnon") >= 64 * 1024
    vm_rss = status_kib(workload.pid, "VmRSS")
    # A bare interpreter holding nothing is about 15 MiB here; 48 MiB of
    # headroom allows other Python versions without hiding a doubled region.
    assert 64 * 1024 <= vm_rss < (64 + 48) * 1024


def test_ready_line_describes_the_process(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()

    assert workload.info["pid"] == workload.pid
    assert workload.info["exe"] == os.path.realpath(f"/proc/{workload.pid}/exe")
    assert workload.info["sockets"] == []
    assert workload.info["touched_mb"] == 0
    assert workload.info["mappings"] == maps_lines(workload.pid)


@needs_ss
def test_sockets_are_what_ss_and_proc_net_say(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--sockets")
    reported = workload.info["sockets"]

    kinds = sorted((s["proto"], s["family"], s["state"]) for s in reported)
    assert kinds == sorted(
        [
            *[("tcp", family, "LISTEN") for family in (4, 6)],
            *[("tcp", family, "ESTABLISHED") for family in (4, 6) for _ in range(2)],
            *[("udp", family, "UNCONN") for family in (4, 6)],
            ("udp", 4, "ESTABLISHED"),
        ]
    )
    inodes = {s["inode"] for s in reported}
    assert len(inodes) == len(reported)
    assert fd_socket_inodes(workload.pid) == inodes

    seen_by_ss = {sock.inode: sock for sock in ss_connections(workload.pid)}
    assert set(seen_by_ss) == inodes
    proc_rows = proc_net_rows(workload.pid)
    for info in reported:
        sock = seen_by_ss[info["inode"]]
        assert (sock.proto, sock.family) == (info["proto"], info["family"])
        assert sock.state == WORKLOAD_TO_SS_STATE[info["state"]]
        assert str(sock.local) == info["local"]
        assert (None if sock.remote is None else str(sock.remote)) == info["remote"]
        assert [user.pid for user in sock.users] == [workload.pid]

        table, state_number, local_port, remote_port = proc_rows[info["inode"]]
        assert NET_TABLES[table] == (info["proto"], info["family"])
        assert state_number == KERNEL_STATE_NUMBERS[sock.kernel_state]
        assert local_port == port_of(info["local"])
        assert remote_port == (0 if info["remote"] is None else port_of(info["remote"]))


@needs_ss
def test_tcp_pairs_are_established_in_ss(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--tcp-pairs", 200)

    sockets = ss_connections(workload.pid)
    assert len(sockets) == 400
    assert {(s.proto, s.state) for s in sockets} == {("tcp", "ESTAB")}
    assert {s.inode for s in sockets} == {s["inode"] for s in workload.info["sockets"]}
    # Both ends are ours: every connection's far end is one of our sockets.
    locals_ = {s.local for s in sockets}
    assert {s.remote for s in sockets} == locals_


def one_page_anonymous(pid: int) -> int:
    count = 0
    with open(f"/proc/{pid}/maps") as handle:
        for line in handle:
            fields = line.split()
            start, end = (int(value, 16) for value in fields[0].split("-"))
            count += end - start == 4096 and len(fields) == 5
    return count


def test_mappings_adds_separate_vmas(spawn_workload: SpawnWorkload) -> None:
    plain = spawn_workload()
    mapped = spawn_workload("--mappings", 5000)

    # Counted as one-page anonymous mappings: the interpreter's own mappings
    # (allocator arenas come and go) differ by a line or two between processes.
    assert one_page_anonymous(mapped.pid) - one_page_anonymous(plain.pid) >= 5000
    assert mapped.info["mappings"] == maps_lines(mapped.pid)


def wait_for_rss_anon(pid: int, at_least_kib: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        rss_anon = status_kib(pid, "RssAnon")
        if rss_anon >= at_least_kib:
            return rss_anon
        if time.monotonic() > deadline:
            raise AssertionError(f"RssAnon stayed at {rss_anon} kB, below {at_least_kib} kB")
        time.sleep(0.02)


def test_paced_growth_stops_at_its_limit(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--touch-mb", 8, "--grow-mb-per-s", 200, "--grow-to-mb", 48)

    wait_for_rss_anon(workload.pid, 48 * 1024)
    time.sleep(0.5)
    # --grow-to-mb counts --touch-mb: 40 MiB of growth on top of 8, then
    # nothing more. A workload that kept going at 200 MiB/s would be far past.
    assert status_kib(workload.pid, "RssAnon") < (48 + 24) * 1024


def own_v1_memory_cgroup() -> Path:
    """This process's directory in the v1 memory hierarchy, found via mountinfo."""
    mount = None
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fstype, _, super_options = after.split()[:3]
        if fstype == "cgroup" and "memory" in super_options.split(","):
            fields = before.split()
            mount = (fields[3], fields[4])
    if mount is None:
        pytest.skip("no v1 memory cgroup hierarchy on this host")
    root, mount_point = mount
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            relative = path[len(root) :] if root != "/" and path.startswith(root) else path
            return Path(mount_point + relative)
    pytest.skip("this process is in no v1 memory cgroup")


@pytest.fixture
def memory_cgroup_64m() -> Iterator[Path]:
    """A child v1 memory cgroup with a 64 MiB limit, removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating a memory cgroup needs root")
    path = own_v1_memory_cgroup() / f"memdoor-workload-{os.getpid()}"
    path.mkdir()
    try:
        (path / "memory.limit_in_bytes").write_text(str(64 * MIB))
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            try:
                path.rmdir()
                break
            except OSError as exc:
                # EBUSY until the killed processes are reaped by their parent.
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def test_grow_until_killed_is_oom_killed_in_a_memory_cgroup(
    memory_cgroup_64m: Path, spawn_workload: SpawnWorkload
) -> None:
    # The cgroup fixture comes first so it is torn down last, after the
    # workload fixture has reaped everything that ran in it.
    workload = spawn_workload("--grow-until-killed", cgroup=str(memory_cgroup_64m))

    assert workload.proc.wait(timeout=120) == -signal.SIGKILL
    oom_control = (memory_cgroup_64m / "memory.oom_control").read_text().split()
    assert int(oom_control[oom_control.index("oom_kill") + 1]) == 1


def oom_kill_count(cgroup: Path) -> int:
    oom_control = (cgroup / "memory.oom_control").read_text().split()
    return int(oom_control[oom_control.index("oom_kill") + 1])


def test_growth_after_a_stdin_line_waits_for_it_then_grows_until_killed(
    memory_cgroup_64m: Path, spawn_workload: SpawnWorkload
) -> None:
    workload = spawn_workload(
        "--grow-after-stdin-line",
        "--grow-until-killed",
        "--grow-mb-per-s",
        400,
        cgroup=str(memory_cgroup_64m),
    )
    assert workload.proc.stdin is not None

    time.sleep(0.5)
    # Growing at 400 MiB/s from ready on, it would be far past the 64 MiB
    # limit by now, and dead.
    assert workload.proc.poll() is None
    assert status_kib(workload.pid, "RssAnon") < 32 * 1024
    assert oom_kill_count(memory_cgroup_64m) == 0

    workload.proc.stdin.write(b"go\n")
    workload.proc.stdin.flush()

    assert workload.proc.wait(timeout=120) == -signal.SIGKILL
    assert oom_kill_count(memory_cgroup_64m) == 1


def test_paced_growth_until_killed_has_no_limit_of_its_own(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload(
        "--grow-after-stdin-line", "--grow-until-killed", "--grow-mb-per-s", 200
    )
    assert workload.proc.stdin is not None
    before = status_kib(workload.pid, "RssAnon")

    workload.proc.stdin.write(b"go\n")
    workload.proc.stdin.flush()

    wait_for_rss_anon(workload.pid, before + 64 * 1024)
    assert workload.stop() == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grow-after-stdin-line"], "--grow-after-stdin-line needs"),
        (["--grow-mb-per-s", "10"], "--grow-mb-per-s needs"),
        (["--grow-to-mb", "10"], "--grow-to-mb needs --grow-mb-per-s"),
        (
            ["--grow-until-killed", "--grow-mb-per-s", "10", "--grow-to-mb", "10"],
            "exclude each other",
        ),
        (["--grow-until-killed", "--grow-mb-per-s", "0"], "must be positive"),
    ],
)
def test_growth_options_that_make_no_sense_are_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_growth_options_that_go_together_are_accepted() -> None:
    paced = parse_args(["--grow-after-stdin-line", "--grow-until-killed", "--grow-mb-per-s", "5"])
    assert (paced.grow_after_stdin_line, paced.grow_until_killed, paced.grow_mb_per_s) == (
        True,
        True,
        5.0,
    )
    bounded = parse_args(["--grow-after-stdin-line", "--grow-mb-per-s", "5", "--grow-to-mb", "9"])
    assert (bounded.grow_after_stdin_line, bounded.grow_to_mb) == (True, 9)


@needs_ss
def test_stop_leaves_no_process_and_no_ports(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--sockets")
    reported: list[SocketInfo] = workload.info["sockets"]

    assert workload.stop() == 0

    assert workload.proc.returncode == 0
    assert not os.path.exists(f"/proc/{workload.pid}")
    with pytest.raises(ChildProcessError):
        os.waitpid(workload.pid, os.WNOHANG)
    inodes = {s["inode"] for s in reported}
    assert inodes.isdisjoint(proc_net_rows(os.getpid()))
    assert inodes.isdisjoint(sock.inode for sock in ss_sockets())
    for info in reported:
        family = socket.AF_INET6 if info["family"] == 6 else socket.AF_INET
        address = info["local"].rsplit(":", 1)[0].strip("[]")
        if info["state"] == "LISTEN":
            with (
                socket.socket(family, socket.SOCK_STREAM) as probe,
                pytest.raises(ConnectionRefusedError),
            ):
                probe.connect((address, port_of(info["local"])))
        elif info["proto"] == "udp" and info["remote"] is None:
            with socket.socket(family, socket.SOCK_DGRAM) as probe:
                probe.bind((address, port_of(info["local"])))


def test_stop_is_idempotent(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()

    assert workload.stop() == 0
    assert workload.stop() == 0


def test_closing_stdin_ends_the_workload(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--touch-mb", 1)
    assert workload.proc.stdin is not None

    workload.proc.stdin.close()

    assert workload.proc.wait(timeout=30) == 0


def test_exit_after_ends_the_workload(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--exit-after", 0.2)

    assert workload.proc.wait(timeout=30) == 0


def test_a_workload_that_fails_reports_its_stderr() -> None:
    with pytest.raises(WorkloadStartError, match=r"(?s)exit status 2.*unrecognized arguments"):
        start_workload("--no-such-option")


def test_a_workload_that_is_late_is_stopped() -> None:
    with pytest.raises(WorkloadStartError, match="no ready line within 0 s; exit status"):
        start_workload("--touch-mb", 1, ready_timeout=0)


@needs_ss
def test_ss_reports_a_dual_stack_wildcard_as_ipv6_all_zeros() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(("::", 0))
        listener.listen()
        port = listener.getsockname()[1]
        inode = os.fstat(listener.fileno()).st_ino

        mine = [sock for sock in ss_connections(os.getpid()) if sock.inode == inode]

    assert len(mine) == 1
    assert (mine[0].family, mine[0].local, mine[0].remote) == (6, Endpoint("::", port), None)


# Lines as iproute2 6.1 printed them on these machines (one with a process
# name containing a blank and a quote-free parenthesis, and an interface).
@pytest.mark.parametrize(
    ("line", "family", "expected"),
    [
        (
            'tcp LISTEN 0 128 *:58381 *:* users:(("python3",pid=6560,fd=11)) ino:10645 '
            "sk:a cgroup:/ v6only:0 <->",
            6,
            ("tcp", "LISTEN", Endpoint("::", 58381), None, 10645, ((6560, 11),)),
        ),
        (
            "tcp TIME-WAIT 0 0 127.0.0.1:57729 127.0.0.1:54902 timer:(timewait,33sec,0) ino:0 sk:e",
            4,
            ("tcp", "TIME-WAIT", Endpoint("127.0.0.1", 57729), Endpoint("127.0.0.1", 54902), 0, ()),
        ),
        (
            'udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:* users:(("systemd-resolve",pid=5,fd=13),'
            '("Web Content (x)",pid=7,fd=2)) uid:101 ino:2345 sk:1 <->',
            4,
            ("udp", "UNCONN", Endpoint("127.0.0.53", 53), None, 2345, ((5, 13), (7, 2))),
        ),
        (
            "udp ESTAB 0 0 [fe80::1]%eth0:546 [fe80::2]:547 ino:77 sk:2 v6only:1 <->",
            6,
            ("udp", "ESTAB", Endpoint("fe80::1", 546), Endpoint("fe80::2", 547), 77, ()),
        ),
    ],
)
def test_parse_ss_line(line: str, family: int, expected: tuple[object, ...]) -> None:
    sock = parse_ss_line(line, 6 if family == 6 else 4)

    users = tuple((user.pid, user.fd) for user in sock.users)
    assert (sock.proto, sock.state, sock.local, sock.remote, sock.inode, users) == expected


@pytest.mark.parametrize(
    "line",
    [
        "LISTEN 0 128 127.0.0.1:80 0.0.0.0:* ino:1",
        "tcp LISTEN 0 128 127.0.0.1:80 0.0.0.0:* sk:1",
        "tcp LISTEN x 128 127.0.0.1:80 0.0.0.0:* ino:1",
        "tcp LISTEN 0 128 127.0.0.1 0.0.0.0:* ino:1",
    ],
)
def test_parse_ss_line_rejects_other_shapes(line: str) -> None:
    with pytest.raises(ParseError):
        parse_ss_line(line, 4)


def test_kernel_state_names() -> None:
    assert kernel_state("ESTAB") == "ESTABLISHED"
    assert kernel_state("UNCONN") == "CLOSE"
    with pytest.raises(ValueError):
        kernel_state("ESTABLISHED")
