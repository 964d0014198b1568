"""The real daemon in a subprocess: notify protocol, watchdog, signals, reload, records."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from memdoor.lab.daemon_process import DaemonProcess, NotifySocket, write_config
from memdoor.sinks.journal_protocol import decode_entry
from tests.hung_filesystem import hung_filesystem
from tests.record_schema import validate_record


@pytest.fixture
def notify(tmp_path: Path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def daemons():
    started: list[DaemonProcess] = []

    def start(*args: Any, **kwargs: Any) -> DaemonProcess:
        daemon = DaemonProcess(*args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def target_toml(
    name: str, pid: int, threshold: int = 1, interval: float = 0.2, **extra: Any
) -> str:
    lines = [
        f'[[target]]\nname = "{name}"\npid = {pid}\nthreshold = {threshold}\ninterval = {interval}'
    ]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def test_ready_status_watchdog_and_stopping(tmp_path, notify, daemons, spawn_workload):
    workload = spawn_workload("--touch-mb", "16")
    config = write_config(tmp_path / "a.toml", target_toml("app", workload.pid, threshold=99))
    daemon = daemons(config, env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
    notify.wait_for("READY", "1")
    daemon.wait_record(lambda r: r["event"] == "target_found" and r["pid"] == workload.pid)
    time.sleep(2.0)
    pings = [t for t, v in notify.assignments("WATCHDOG") if v == "1"]
    # WATCHDOG_USEC=0.4 s: a ping every 0.2 s, so about ten in two seconds.
    assert len(pings) >= 6, pings
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < 0.4, gaps
    status = [v for _t, v in notify.assignments("STATUS")]
    assert any(s.startswith("watching 1 targets (1 processes)") for s in status), status
    assert daemon.stop() == 0
    notify.wait_for("STOPPING", "1")
    assert "Traceback" not in daemon.stderr
    assert daemon.events()[-1] == "daemon_stopping"
    for record in daemon.records:
        validate_record(record)


def test_watchdog_pid_of_another_process_is_not_pinged(tmp_path, notify, daemons):
    config = write_config(tmp_path / "a.toml", "")
    daemons(
        config,
        env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"},
    )
    notify.wait_for("READY", "1")
    time.sleep(0.6)
    assert notify.assignments("WATCHDOG") == []


def test_a_target_stuck_in_the_kernel_stops_the_pings_but_not_sigterm(
    tmp_path, notify, daemons, pidfile_dir
):
    """A pidfile on a file system that never answers (a hung NFS or FUSE mount) holds
    its target's resolution in the kernel. Resolution runs in a thread of its own, so
    the event loop runs on; the stuck target makes no progress, so the pings stop and
    systemd restarts the daemon. (A FIFO pidfile once blocked the loop itself here; a
    FIFO is now refused without being opened.) SIGTERM still stops the daemon at once."""
    with hung_filesystem(pidfile_dir / "hung") as mountpoint:
        config = write_config(
            tmp_path / "a.toml",
            f'[[target]]\nname = "ok"\npid = {os.getpid()}\nthreshold = 99\ninterval = 0.2\n'
            f'[[target]]\nname = "stuck"\npidfile = "{mountpoint}/app.pid"\ninterval = 0.2\n',
        )
        env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"}
        daemon = daemons(config, env=env)
        notify.wait_for("READY", "1")
        time.sleep(1.0)
        count = len(notify.assignments("WATCHDOG"))
        time.sleep(1.0)
        assert len(notify.assignments("WATCHDOG")) == count
        status = [value for _t, value in notify.assignments("STATUS")]
        assert "STALLED: no progress on stuck" in status, status
        asked = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - asked < 5.0
    assert "Traceback" not in daemon.stderr


def test_sighup_applies_a_good_config_and_keeps_running_on_a_bad_one(
    tmp_path, notify, daemons, spawn_workload
):
    first = spawn_workload("--touch-mb", "8")
    second = spawn_workload("--touch-mb", "8")
    config = write_config(tmp_path / "a.toml", target_toml("one", first.pid, threshold=99))
    daemon = daemons(config, env={"NOTIFY_SOCKET": str(notify.path)})
    notify.wait_for("READY", "1")
    found_one = daemon.wait_record(lambda r: r["event"] == "target_found" and r["target"] == "one")

    write_config(
        config,
        target_toml("one", first.pid, threshold=99) + target_toml("two", second.pid, threshold=99),
    )
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_record(lambda r: r["event"] == "config_reloaded")
    assert reloaded["added"] == ["two"] and reloaded["removed"] == [] and reloaded["changed"] == []
    daemon.wait_record(lambda r: r["event"] == "target_found" and r["target"] == "two")
    # The unchanged target was not restarted: no second target_found for it.
    assert [r for r in daemon.records if r["event"] == "target_found" and r["target"] == "one"] == [
        found_one
    ]
    assert len(notify.assignments("RELOADING")) == 1
    assert len([v for _t, v in notify.assignments("READY") if v == "1"]) == 2

    write_config(config, "[[target]]\nname = 'one'\nthreshold = 150\n")
    daemon.signal(signal.SIGHUP)
    invalid = daemon.wait_record(lambda r: r["event"] == "config_invalid")
    assert invalid["level"] == "error"
    assert invalid["file"] == str(config)
    keys = {e["key"] for e in invalid["errors"]}
    assert any("threshold" in key for key in keys), invalid
    assert len([v for _t, v in notify.assignments("READY") if v == "1"]) == 3
    # Still watching both targets from the old configuration.
    assert daemon.proc.poll() is None
    notify.wait_for(
        "STATUS",
        "watching 2 targets (2 processes), 0 above threshold, "
        f"{len(daemon.records)} records emitted",
        timeout=7,
    )
    assert daemon.stop() == 0
    for record in daemon.records:
        validate_record(record)


def test_config_error_exits_78_naming_file_key_and_reason(tmp_path):
    config = write_config(
        tmp_path / "bad.toml",
        '[[target]]\nname = "a"\npid = 1\n[[target]]\nname = "b"\npid = 2\nthreshold = 150\n',
    )
    result = subprocess.run(
        [sys.executable, "-m", "memdoor", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 78
    assert str(config) in result.stderr
    assert "target[1]" in result.stderr and "threshold" in result.stderr and "150" in result.stderr
    records = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(records) == 1
    record = json.loads(records[0])
    validate_record(record)
    assert record["event"] == "config_invalid" and record["file"] == str(config)


def test_threshold_transitions_and_gone_reasons(tmp_path, daemons, spawn_workload):
    workload = spawn_workload("--touch-mb", "8")
    # The shell execs sleep once told to, after it was adopted: a timed exec raced the
    # daemon's start on a busy machine.
    shell = subprocess.Popen(
        ["/bin/sh", "-c", "read go; exec /bin/sleep 30"], stdin=subprocess.PIPE
    )
    try:
        config = write_config(
            tmp_path / "a.toml",
            target_toml("hog", workload.pid, threshold=1, sections='["memory", "oom", "tree"]')
            + target_toml("shell", shell.pid, threshold=99),
        )
        daemon = daemons(config)
        found_shell = daemon.wait_record(
            lambda r: r["event"] == "target_found" and r["target"] == "shell"
        )
        assert shell.stdin is not None
        shell.stdin.write(b"go\n")
        shell.stdin.flush()
        gone_shell = daemon.wait_record(
            lambda r: r["event"] == "target_gone" and r["target"] == "shell"
        )
        assert gone_shell["reason"] == "exe_mismatch"
        assert gone_shell["process"]["exe"] == found_shell["process"]["exe"]
    finally:
        shell.kill()
        shell.wait()
    first = daemon.wait_record(lambda r: r["target"] == "hog" and r["event"] in ("target_found",))
    assert first["pid"] == workload.pid
    workload.stop()
    gone = daemon.wait_record(lambda r: r["event"] == "target_gone" and r["target"] == "hog")
    assert gone["reason"] == "exited"
    assert daemon.stop() == 0
    for record in daemon.records:
        validate_record(record)


def test_native_journal_entries_reach_the_socket_whole(tmp_path, daemons, spawn_workload):
    """Records go out as native entries; a snapshot with 20,000 mappings arrives as one."""
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "journal.sock"))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    receiver.settimeout(20)
    workload = spawn_workload("--touch-mb", "300", "--mappings", "20000")
    try:
        config = write_config(
            tmp_path / "a.toml",
            f'[sinks.journald]\nenabled = true\nsocket = "{tmp_path / "journal.sock"}"\n'
            + target_toml("big", workload.pid, threshold=1, interval=0.5, count=1, detail='"full"'),
        )
        daemon = daemons(config)
        entries = []
        while not any(e.get("MEMDOOR_EVENT") == b"threshold_crossed" for e in entries):
            data, fds, _flags, _addr = socket.recv_fds(receiver, 16 << 20, 1)
            if fds:
                with os.fdopen(fds[0], "rb") as memfd:
                    data = memfd.read()
            entries.append(decode_entry(data))
        crossed = entries[-1]
        record = json.loads(crossed["MEMDOOR_RECORD"])
        validate_record(record)
        assert len(record["mappings"]) >= 20000
        assert crossed["MEMDOOR_TARGET"] == b"big"
        assert crossed["MEMDOOR_PID"] == str(workload.pid).encode()
        assert crossed["SYSLOG_IDENTIFIER"] == b"memdoor"
        assert crossed["PRIORITY"] == b"4"
        assert int(crossed["MEMDOOR_RSS_KB"]) == record["memory"]["rss_kb"]
        assert crossed["MESSAGE"].startswith(b"big pid %d RSS " % workload.pid)
        assert len(crossed["MEMDOOR_RECORD"]) > 1_000_000
        # stdout carried the same record: same line, byte for byte.
        line = daemon.wait_record(lambda r: r["event"] == "threshold_crossed")
        assert line == record
    finally:
        receiver.close()


def test_closed_stdout_is_reported_once_and_the_daemon_goes_on(tmp_path, daemons, spawn_workload):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(tmp_path / "journal.sock"))
    receiver.settimeout(15)
    workload = spawn_workload("--touch-mb", "8")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        config = write_config(
            tmp_path / "a.toml",
            f'[sinks.journald]\nenabled = true\nsocket = "{tmp_path / "journal.sock"}"\n'
            + target_toml("app", workload.pid, threshold=99),
        )
        daemon = daemons(config, stdout=write_end)
        events = []
        while b"target_found" not in events:
            events.append(decode_entry(receiver.recv(1 << 20))["MEMDOOR_EVENT"])
        assert events.count(b"sink_failed") == 1
        workload.stop()
        while b"target_gone" not in events:
            events.append(decode_entry(receiver.recv(1 << 20))["MEMDOOR_EVENT"])
        assert events.count(b"sink_failed") == 1
        assert daemon.stop() == 0
        assert daemon.stderr.count("sink stdout failed") == 1
    finally:
        os.close(write_end)
        receiver.close()


def test_ecs_format_on_stdout(tmp_path, daemons, spawn_workload):
    workload = spawn_workload("--touch-mb", "8")
    config = write_config(
        tmp_path / "a.toml",
        '[sinks.stdout]\nformat = "ecs"\n' + target_toml("app", workload.pid, threshold=99),
    )
    daemon = daemons(config)
    found = daemon.wait_record(lambda r: r.get("event", {}).get("action") == "target_found")
    assert daemon.stop() == 0
    assert found["memdoor"]["target"] == "app" and found["process"]["pid"] == workload.pid
    assert found["ecs"]["version"] and found["host"]["name"] == socket.gethostname()
    assert found["@timestamp"].endswith("Z") and found["log"]["level"] == "info"


def test_reloads_restart_only_the_targets_whose_settings_changed(
    tmp_path, notify, daemons, spawn_workload
):
    """The daemon keeps its targets resolved, not as written: the file read again
    unchanged changes none of them, a target's own key restarts that target alone, and
    a target left out stops."""
    workload = spawn_workload("--touch-mb", "8")
    config = write_config(
        tmp_path / "a.toml",
        target_toml("one", workload.pid, threshold=99)
        + target_toml("two", workload.pid, threshold=99),
    )
    daemon = daemons(config, env={"NOTIFY_SOCKET": str(notify.path)})
    started = daemon.wait_record(lambda r: r["event"] == "daemon_started")
    assert started["message"].startswith("memdoor started: 2 targets,")
    for name in ("one", "two"):
        daemon.wait_record(lambda r, n=name: r["event"] == "target_found" and r["target"] == n)

    daemon.signal(signal.SIGHUP)
    same = daemon.wait_record(lambda r: r["event"] == "config_reloaded")
    assert same["added"] == same["removed"] == same["changed"] == same["settings_changed"] == []

    write_config(config, target_toml("two", workload.pid, threshold=98))
    daemon.signal(signal.SIGHUP)
    second = daemon.wait_record(lambda r: r["event"] == "config_reloaded" and r is not same)
    assert second["added"] == [] and second["settings_changed"] == []
    assert second["removed"] == ["one"] and second["changed"] == ["two"]
    after = daemon.records.index(second)
    daemon.wait_record(
        lambda r: (
            r["event"] == "target_found"
            and r["target"] == "two"
            and daemon.records.index(r) > after
        )
    )
    # The third READY=1 (start, two reloads) says what runs after the second reload.
    deadline = time.monotonic() + 10
    while len(notify.assignments("READY")) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    (ready_time, _value) = notify.assignments("READY")[2]
    status = [value for when, value in notify.assignments("STATUS") if when == ready_time]
    assert status[0].startswith("watching 1 targets ("), status
    found = [r["target"] for r in daemon.records if r["event"] == "target_found"]
    assert sorted(found) == ["one", "two", "two"]
    assert daemon.stop() == 0
    for record in daemon.records:
        validate_record(record)
