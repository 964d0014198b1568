"""How much journal one target costs per day while it stays above its threshold.

The issue's budget is 50 MB of journal per target per day with the default
settings. The only honest measure is journald's own files, after its
compression and deduplication, so this runs a REAL systemd-journald (a private
one, memdoor/lab/private_journald.py), the real daemon sending native entries
to it, and one target held above its threshold: a memdoor/lab/workload.py process
with many mappings (so a detail = "full" snapshot is as big as it gets) and
enough touched memory to sit above threshold 1%.

Each mode (the defaults, then detail = "full") gets its own fresh journald and
runs for --seconds after the threshold is crossed. Journal growth is read from
the journal files' headers: the end of the last object written
(tail_object_offset + its size) is the bytes journald really used, while file
sizes and `journalctl --disk-usage` grow in 8 MiB allocation steps and would
hide a day's rate in a short run. Printed per mode:

- the one-time cost of the crossing (daemon start, target found, the
  threshold_crossed snapshot), in journal bytes;
- the steady rate after it (compact `sample` records every interval),
  extrapolated to a day;
- a worst case: that rate plus a full snapshot as often as
  full_snapshot_min_interval allows (300 s), each costing what the crossing
  snapshot cost. A process that changes materially all day long gets this;
- the largest record (bytes of JSON) and the record counts.

The worst case rests on the compression the crossing snapshot got. The
workload's thousands of mappings are all alike (one anonymous page each), so
its full snapshots compress far better than a real process's, whose mappings
name many files: a real ~94 KB snapshot compressed about 4.7:1 on these
machines. Scale the detail = "full" worst case by the printed ratio over the
one to expect before relying on it.

    python benchmarks/journal_budget.py [--seconds 600] [--mappings 20000] [--touch-mb 300]

Needs root (the private journald uses a mount namespace).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memdoor.lab.private_journald import RealJournald, running_journald
from memdoor.lab.python_child import IMPORT_ROOT, module_command
from memdoor.lab.workload_parent import Workload, start_workload

DAY = 86400
# The defaults this measures against (etc/memdoor/example.toml).
DEFAULT_INTERVAL = 5.0
DEFAULT_FULL_SNAPSHOT_MIN_INTERVAL = 300.0
BUDGET_MB_PER_DAY = 50

# systemd's journal file format (docs/JOURNAL_FILE_FORMAT.md): the header starts
# with the signature, tail_object_offset is the le64 at offset 136, and every
# object starts with type, flags, 6 reserved bytes and its le64 size.
_SIGNATURE = b"LPKSHHRH"
_TAIL_OBJECT_OFFSET = 136
_OBJECT_HEADER = struct.Struct("<BB6xQ")


@dataclass(frozen=True)
class Mode:
    name: str
    detail: str


MODES = (Mode("defaults", "summary"), Mode('detail = "full"', "full"))


def tail_object_offset(header: bytes) -> int:
    """Where the last object of a journal file starts, from its header bytes."""
    if header[:8] != _SIGNATURE:
        raise ValueError(f"not a journal file (signature {header[:8]!r})")
    return int(struct.unpack_from("<Q", header, _TAIL_OBJECT_OFFSET)[0])


def object_end(offset: int, object_header: bytes) -> int:
    """The 8-byte aligned end of the object at offset: what the file really uses."""
    _type, _flags, size = _OBJECT_HEADER.unpack(object_header[: _OBJECT_HEADER.size])
    return offset + (int(size) + 7) // 8 * 8


def journal_file_used(path: Path) -> int:
    with open(path, "rb") as handle:
        offset = tail_object_offset(handle.read(_TAIL_OBJECT_OFFSET + 8))
        handle.seek(offset)
        return object_end(offset, handle.read(_OBJECT_HEADER.size))


def journal_used(journald: RealJournald) -> int:
    """Bytes used across every journal file this journald wrote (archived ones too)."""
    journald.sync()
    files = sorted((journald.run_dir / "log" / "journal").rglob("*.journal"))
    if not files:
        raise RuntimeError(f"no journal files under {journald.run_dir}")
    return sum(journal_file_used(path) for path in files)


def config_text(pid: int, detail: str, socket_path: str) -> str:
    """Only what the measurement needs; everything else stays at its default."""
    return (
        "[sinks.journald]\n"
        "enabled = true\n"
        f'socket = "{socket_path}"\n'
        "[[target]]\n"
        'name = "budget"\n'
        f"pid = {pid}\n"
        "threshold = 1\n"
        f'detail = "{detail}"\n'
    )


def read_records(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.endswith("\n")]


def wait_for_event(path: Path, event: str, daemon: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(record["event"] == event for record in read_records(path)):
            return
        if daemon.poll() is not None:
            raise RuntimeError(f"daemon exited with {daemon.returncode} before {event}")
        time.sleep(0.2)
    raise RuntimeError(f"no {event} record within {timeout} s")


@contextlib.contextmanager
def running_daemon(config: Path, stdout_path: Path) -> Iterator[subprocess.Popen[str]]:
    with open(stdout_path, "w", encoding="utf-8") as stdout:
        daemon = subprocess.Popen(
            module_command("memdoor", "run", "--config", str(config)),
            stdout=stdout,
            cwd=IMPORT_ROOT,
            text=True,
        )
    try:
        yield daemon
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def disk_usage(journald: RealJournald) -> str:
    result = journald.journalctl("--disk-usage")
    return result.stdout.decode().strip() or result.stderr.decode().strip()


def mb(value: float) -> str:
    return f"{value / 1e6:.2f} MB"


def measure(mode: Mode, workload: Workload, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="mdbudget-", dir="/tmp") as tmp:
        tmp_path = Path(tmp)
        with running_journald(tmp_path) as journald:
            config = tmp_path / "budget.toml"
            config.write_text(config_text(workload.pid, mode.detail, journald.socket_path))
            stdout_path = tmp_path / "stdout.jsonl"
            before = journal_used(journald)
            with running_daemon(config, stdout_path) as daemon:
                wait_for_event(stdout_path, "threshold_crossed", daemon, timeout=60)
                crossed_at = time.monotonic()
                at_crossing = journal_used(journald)
                time.sleep(seconds)
                at_end = journal_used(journald)
                measured = time.monotonic() - crossed_at
            usage = disk_usage(journald)
        records = read_records(stdout_path)
    crossing = at_crossing - before
    rate = (at_end - at_crossing) / measured
    per_day = crossing + rate * DAY
    worst = rate * DAY + crossing * DAY / DEFAULT_FULL_SNAPSHOT_MIN_INTERVAL
    sizes = [(len(json.dumps(r, separators=(",", ":")).encode()), r["event"]) for r in records]
    counts: dict[str, int] = {}
    for _size, event in sizes:
        counts[event] = counts.get(event, 0) + 1
    largest, largest_event = max(sizes)
    samples = [size for size, event in sizes if event == "sample"]
    print(f"== {mode.name}: {measured:.0f} s measured after the crossing")
    print(f"records: {', '.join(f'{event} {n}' for event, n in counts.items())}")
    print(f"largest record: {largest} bytes of JSON ({largest_event})")
    if samples:
        print(f"sample records: {min(samples)} to {max(samples)} bytes of JSON")
    crossed = next(size for size, event in sizes if event == "threshold_crossed")
    print(
        f"crossing (start + found + threshold_crossed entries): {crossing} journal bytes; "
        f"threshold_crossed is {crossed} bytes of JSON, {crossed / crossing:.1f} per journal byte"
    )
    print(f"steady rate: {rate:.1f} journal bytes/s")
    verdict = "within" if per_day < BUDGET_MB_PER_DAY * 1e6 else "OVER"
    print(
        f"per target per day, as measured: {mb(per_day)} (budget {BUDGET_MB_PER_DAY} MB: {verdict})"
    )
    print(
        f"worst case (a full snapshot every {DEFAULT_FULL_SNAPSHOT_MIN_INTERVAL:.0f} s): "
        f"{mb(worst)} per day"
    )
    print(f"journalctl --disk-usage at the end (allocated, 8 MiB steps): {usage}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600, help="per mode, after the crossing")
    parser.add_argument("--mappings", type=int, default=20000)
    parser.add_argument("--touch-mb", type=int, default=300)
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root: the private journald runs in a mount namespace")
    with open("/proc/meminfo") as meminfo:
        total_mb = int(meminfo.readline().split()[1]) // 1024
    # Threshold 1% of RAM, with margin, whatever the machine's size.
    touch_mb = max(args.touch_mb, total_mb * 3 // 200)
    workload = start_workload("--mappings", args.mappings, "--touch-mb", touch_mb)
    try:
        print(
            f"target: {workload.info['mappings']} mappings, {touch_mb} MiB touched, "
            f"threshold 1% of {total_mb} MiB, interval {DEFAULT_INTERVAL:g} s (default)"
        )
        for mode in MODES:
            measure(mode, workload, args.seconds)
    finally:
        workload.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
