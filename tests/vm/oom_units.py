"""A unit the kernel OOM-kills again and again, and memdoor's verdicts on its kills.

The unit is a service as operators run them: its own user, `MemoryMax=`, a pidfile
written by systemd's side (as root) once the process runs, and `Restart=always`, so
every kill is followed by a new process under the same pidfile, which memdoor must
follow. On cgroup v2 systemd removes the unit's cgroup right after each kill, which is
the race these scenarios exist to catch.
"""

from __future__ import annotations

import datetime
import re
from typing import Any, Optional

from tests.system.container import SystemdMachine, poll_until
from tests.system.memdoor_units import HELPERS, memdoor_records

# Perl, because perl-base is in every Debian system and starts in a fraction of
# Python's time under emulation. Both settle for a second first, in which memdoor
# hears the pidfile written and adopts the new process (found only on its 5 s
# interval, some kills came before it), then write every page ("x" x N is a real
# string).
# 2 MiB every 50 ms: about 40 MiB/s, a leak memdoor polls through at min_interval.
LEAK = """\
use strict;
my @chunks;
sleep 1;
while (1) {
    push @chunks, "x" x (2 << 20);
    select(undef, undef, undef, 0.05);
}
"""
# As fast as the guest can write pages.
FLOOD = """\
use strict;
my @chunks;
sleep 1;
while (1) {
    push @chunks, "x" x (4 << 20);
}
"""
KILLS = 3
_KILLED = re.compile(r"Killed process (\d+) \(perl\)")


def oomer_unit(machine: SystemdMachine, name: str, limit_mb: int, script: str) -> str:
    """Install (not start) NAME.service running `script` as nobody under MemoryMax=;
    its pidfile is /run/NAME.pid. Returns the unit's name."""
    script_path = f"{HELPERS}/{name}.pl"
    machine.write_file(script_path, script)
    unit = f"{name}.service"
    machine.write_file(
        f"/etc/systemd/system/{unit}",
        "[Unit]\n"
        "StartLimitIntervalSec=0\n"
        "[Service]\n"
        "User=nobody\n"
        f"MemoryMax={limit_mb}M\n"
        "MemorySwapMax=0\n"
        f"ExecStart=/usr/bin/perl {script_path}\n"
        f"ExecStartPost=+/bin/sh -c 'echo $MAINPID > /run/{name}.pid'\n"
        "Restart=always\n"
        "RestartSec=1s\n",
    )
    machine.run("systemctl", "daemon-reload")
    return unit


def verdicts(
    machine: SystemdMachine, memdoor_unit: str, target: str, count: int = KILLS
) -> list[dict[str, Any]]:
    """memdoor's first `count` verdicts (oom_killed or target_gone) on the target's
    processes, in order, waiting for them as the unit is killed and restarted."""

    def enough() -> Optional[list[dict[str, Any]]]:
        records = memdoor_records(
            machine, f"_SYSTEMD_UNIT={memdoor_unit}", f"MEMDOOR_TARGET={target}"
        )
        found = [r for r in records if r["event"] in ("oom_killed", "target_gone")]
        return found[:count] if len(found) >= count else None

    return poll_until(enough, 90.0 * count, f"{count} verdicts of {memdoor_unit} on {target}")


def kernel_killed_pids(machine: SystemdMachine) -> set[int]:
    """Every perl the OOM killer killed since boot, from the kernel log."""
    text = machine.run("journalctl", "-k", "-o", "cat").stdout
    return {int(pid) for pid in _KILLED.findall(text)}


def moment(rfc3339: str) -> datetime.datetime:
    """A record's timestamp (UTC, milliseconds, Z) as an aware datetime."""
    return datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
