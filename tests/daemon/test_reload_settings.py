"""SIGHUP applies or reports every daemon-wide key: the watchdog on and off, redaction,
inherited defaults, sinks; and a key added to [daemon] later cannot be forgotten."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memdoor.config import INHERITED_KEYS, Config, DaemonConfig, SinksConfig
from memdoor.daemon import changed_settings
from memdoor.lab.daemon_process import DaemonProcess, NotifySocket, write_config
from tests.record_schema import validate_record

WATCHDOG_USEC = "400000"
# Half of WATCHDOG_USEC between pings; this many quiet periods mean pings stopped.
QUIET_SECONDS = 1.0


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def daemons() -> Iterator[Any]:
    started: list[DaemonProcess] = []

    def start(*args: Any, **kwargs: Any) -> DaemonProcess:
        daemon = DaemonProcess(*args, **kwargs)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


def watchdog_config(path: Path, on: bool, pid: int) -> Path:
    return write_config(
        path,
        f"[daemon]\nwatchdog = {str(on).lower()}\n"
        f'[[target]]\nname = "app"\npid = {pid}\nthreshold = 99\ninterval = 0.2\n',
    )


def pings_after(notify: NotifySocket, when: float) -> int:
    return len([t for t, v in notify.assignments("WATCHDOG") if v == "1" and t > when])


def reloaded(daemon: DaemonProcess, count: int) -> dict[str, Any]:
    """SIGHUP, then the count-th config_reloaded record."""
    daemon.signal(signal.SIGHUP)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [r for r in daemon.records if r["event"] == "config_reloaded"]
        if len(found) >= count:
            return found[count - 1]
        time.sleep(0.02)
    raise AssertionError(f"no config_reloaded #{count}: {daemon.events()}")


def test_reload_turns_the_watchdog_off_and_on_and_tells_systemd(
    tmp_path, notify, daemons, spawn_workload
) -> None:
    workload = spawn_workload("--touch-mb", "8")
    config = watchdog_config(tmp_path / "a.toml", True, workload.pid)
    daemon = daemons(
        config, env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": WATCHDOG_USEC}
    )
    notify.wait_for("READY", "1")
    time.sleep(QUIET_SECONDS)
    assert pings_after(notify, 0) >= 3

    watchdog_config(config, False, workload.pid)
    off = reloaded(daemon, 1)
    assert off["settings_changed"] == ["daemon.watchdog"] and off["not_applied"] == []
    assert off["added"] == off["removed"] == off["changed"] == []
    # Disarmed rather than left to expire: systemd would kill a daemon that stops pinging.
    notify.wait_for("WATCHDOG_USEC", "0")
    disarmed = notify.assignments("WATCHDOG_USEC")[-1][0]
    time.sleep(QUIET_SECONDS)
    assert pings_after(notify, disarmed) == 0

    watchdog_config(config, True, workload.pid)
    on = reloaded(daemon, 2)
    assert on["settings_changed"] == ["daemon.watchdog"] and on["not_applied"] == []
    notify.wait_for("WATCHDOG_USEC", WATCHDOG_USEC)
    rearmed = notify.assignments("WATCHDOG_USEC")[-1][0]
    time.sleep(QUIET_SECONDS)
    assert pings_after(notify, rearmed) >= 3
    assert daemon.stop() == 0
    for record in daemon.records:
        validate_record(record)


def test_watchdog_off_at_start_disarms_what_systemd_armed(tmp_path, notify, daemons) -> None:
    config = watchdog_config(tmp_path / "a.toml", False, 1)
    daemons(config, env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": WATCHDOG_USEC})
    notify.wait_for("READY", "1")
    notify.wait_for("WATCHDOG_USEC", "0")
    time.sleep(QUIET_SECONDS)
    assert notify.assignments("WATCHDOG") == []


def test_reload_applies_redaction_and_inherited_keys_and_names_them(
    tmp_path, daemons, spawn_workload
) -> None:
    workload = spawn_workload("--touch-mb", "8")
    target = f'[[target]]\nname = "app"\npid = {workload.pid}\nthreshold = 99\n'
    pinned = f'[[target]]\nname = "pinned"\npid = {workload.pid}\nthreshold = 99\ninterval = 0.5\n'
    config = write_config(tmp_path / "a.toml", "[daemon]\ninterval = 0.2\n" + target + pinned)
    daemon = daemons(config)
    first = daemon.wait_record(lambda r: r["event"] == "target_found" and r["target"] == "app")
    assert len(first["process"]["cmdline"]) > 1

    write_config(
        config,
        "[daemon]\ninterval = 0.3\nredact_cmdline = true\nfull_snapshot_growth = 30\n"
        + target
        + pinned,
    )
    record = reloaded(daemon, 1)

    assert record["settings_changed"] == [
        "daemon.interval",
        "daemon.full_snapshot_growth",
        "daemon.redact_cmdline",
    ]
    assert record["not_applied"] == []
    # Both inherit full_snapshot_growth; only app inherits the interval.
    assert record["changed"] == ["app", "pinned"]
    assert "daemon.redact_cmdline" in record["message"]
    for name in ("app", "pinned"):
        again = daemon.wait_record(
            lambda r, name=name: (
                r["event"] == "target_found"
                and r["target"] == name
                and daemon.records.index(r) > daemon.records.index(record)
            )
        )
        assert again["process"]["cmdline"] == first["process"]["cmdline"][:1]
    assert daemon.stop() == 0
    for record in daemon.records:
        validate_record(record)


# A value other than the default for every daemon-wide key. A key added to
# [daemon] or [sinks.*] fails the test below until it is listed here.
OTHER_VALUES: dict[str, Any] = {
    "daemon.interval": 7.0,
    "daemon.threshold": 51,
    "daemon.threshold_base": "cgroup",
    "daemon.min_interval": 0.2,
    "daemon.detail": "full",
    "daemon.full_snapshot_min_interval": 30.0,
    "daemon.full_snapshot_growth": 21,
    "daemon.full_snapshot_on_change": False,
    "daemon.watchdog": False,
    "daemon.redact_cmdline": True,
    "sinks.stdout.enabled": False,
    "sinks.stdout.format": "ecs",
    "sinks.journald.enabled": True,
    "sinks.journald.socket": "/run/other/socket",
    "sinks.journald.format": "ecs",
}


def with_value(key: str, value: Any) -> Config:
    section, *rest = key.split(".")
    document: dict[str, Any] = {}
    node = document.setdefault(section, {})
    for part in rest[:-1]:
        node = node.setdefault(part, {})
    node[rest[-1]] = value
    return Config.model_validate(document)


def test_every_daemon_wide_key_is_seen_by_reload() -> None:
    daemon_keys = {f"daemon.{key}" for key in DaemonConfig.model_fields}
    sink_keys = {
        f"sinks.{sink}.{key}"
        for sink, field in SinksConfig.model_fields.items()
        for key in field.annotation.model_fields
    }
    assert set(OTHER_VALUES) == daemon_keys | sink_keys
    for key, value in OTHER_VALUES.items():
        assert changed_settings(Config(), with_value(key, value)) == [key]


def test_daemon_keys_other_than_the_inherited_ones_are_the_two_reload_applies() -> None:
    """Inherited keys reach targets through their resolved settings; watchdog and
    redact_cmdline are applied by Daemon.reload itself. A new [daemon] key must be
    applied there, or reported in config_reloaded's not_applied, before it joins."""
    assert set(DaemonConfig.model_fields) - set(INHERITED_KEYS) == {"watchdog", "redact_cmdline"}
