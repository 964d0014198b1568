"""What `memdoor demo` does once parsed: the real daemon, as a child, watching a
process the demo starts, and the post-mortem of its run."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

from memdoor.cli.daemon_commands import load_or_report
from memdoor.cli.parsers import build_show_parser
from memdoor.cli.show_command import show_command
from memdoor.collect.memory import read_meminfo
from memdoor.collect.reading import Unreadable
from memdoor.config import EX_CONFIG
from memdoor.events import Event
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.python_child import IMPORT_ROOT, module_command
from memdoor.lab.unavailable import LabUnavailable
from memdoor.lab.workload_parent import Workload, WorkloadStartError, start_workload
from memdoor.outputs import console_formatter
from memdoor.sinks.dispatch import Formatter
from memdoor.sinks.stdout import StdoutSink

# Without root, the demo's process holds a little more than 1% of MemTotal,
# at most this much.
DEMO_CAP_MB = 1024
# As root, it grows from DEMO_START_MB until its cgroup's limit kills it.
DEMO_LIMIT_MB = 128
DEMO_START_MB = 16
# How long the records keep coming after the kill (the daemon tells of it and of
# what followed), and how long the daemon has to stop once told.
AFTER_KILL_S = 1.0
STOP_WAIT_S = 10.0
# --seconds counts from the daemon's start (daemon_started), as when it ran in this
# process; its interpreter and imports get at most this long on a loaded machine.
START_WAIT_S = 30.0


def demo_command(args: argparse.Namespace) -> int:
    """The real daemon, as a child, watching a process the demo starts: records within
    seconds. As root the process grows in a temporary memory cgroup until the OOM killer
    ends it, and the post-mortem of the run follows. Everything started is stopped and
    the cgroup removed however the demo ends (Ctrl-C included)."""
    meminfo = read_meminfo()
    if isinstance(meminfo, Unreadable):
        print(f"memdoor demo: cannot read {meminfo.what}: {meminfo.detail}", file=sys.stderr)
        return 1
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="memdoor-demo-"))
        try:
            watched, target = _demo_process(stack, meminfo.total_kb, args.seconds)
        except WorkloadStartError as exc:
            print(f"memdoor demo: the demo process did not start: {exc}", file=sys.stderr)
            return 1
        path = os.path.join(tmp, "demo.toml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(f'[[target]]\nname = "demo"\npid = {watched.pid}\n{target}')
        if load_or_report(path) is None:
            return EX_CONFIG
        view = console_formatter(StdoutSink(view=args.format), os.environ)
        records = os.path.join(tmp, "records.jsonl")
        try:
            code, killed = _run_demo_daemon(path, records, view, args.seconds, watched)
        except KeyboardInterrupt:
            return 130
        if killed:
            # The person's screen gets the post-mortem; a pipe of JSON lines stays one.
            with contextlib.redirect_stdout(sys.stdout if view is not None else sys.stderr):
                show_command(build_show_parser().parse_args([records, "--kill", "latest"]))
        elif os.geteuid() != 0:
            print(
                "memdoor demo: run as root, the demo ends with a real OOM kill of its process "
                "in a temporary memory cgroup, and the post-mortem `memdoor show` gives of it",
                file=sys.stderr,
            )
        return code


def _demo_process(
    stack: contextlib.ExitStack, mem_total_kb: int, seconds: float
) -> tuple[Workload, str]:
    """The process to watch and the rest of its target's configuration.

    As root: a process growing in a cgroup of its own, timed to be killed about
    halfway through the time left once it is watched, against that cgroup's limit.
    Otherwise: a process holding a little more than 1% of MemTotal (the lowest
    threshold), capped so that the demo never takes a large host's memory.
    """
    sections = 'sections = ["memory", "oom", "tree", "mappings", "connections"]\n'
    if os.geteuid() == 0:
        try:
            cgroup = stack.enter_context(live_memory_cgroup(DEMO_LIMIT_MB << 20))
        except LabUnavailable as exc:
            print(f"memdoor demo: no OOM kill in this demo: {exc}", file=sys.stderr)
        else:
            # Growth starts once the daemon watches it (its go line).
            rate = max(1.0, (DEMO_LIMIT_MB - DEMO_START_MB) / (seconds / 2))
            workload = cgroup.spawn(
                "--touch-mb",
                DEMO_START_MB,
                "--grow-mb-per-s",
                f"{rate:.1f}",
                "--grow-until-killed",
                "--grow-after-stdin-line",
            )
            target = f'threshold = 50\nthreshold_base = "cgroup"\ninterval = 0.5\n{sections}'
            return workload, target
    size_mb = min(DEMO_CAP_MB, mem_total_kb * 15 // 1000 // 1024 + 1)
    workload = start_workload("--touch-mb", size_mb)
    stack.callback(workload.stop)
    return workload, f"threshold = 1\ninterval = 1.0\n{sections}"


def _run_demo_daemon(
    path: str, records: str, view: Optional[Formatter], seconds: float, watched: Workload
) -> tuple[int, bool]:
    """`memdoor run --format json` until seconds are up (or shortly after a kill), each
    record kept in the records file and shown as view renders it, or as it came;
    watched gets its go line once the daemon watches it. Returns the daemon's exit
    code and whether an oom_killed record came."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    daemon = subprocess.Popen(
        module_command("memdoor", "run", "--format", "json", "--config", path),
        stdout=subprocess.PIPE,
        env=env,
        cwd=IMPORT_ROOT,
    )
    killed = False
    try:
        assert daemon.stdout is not None
        deadline = time.monotonic() + START_WAIT_S + seconds
        stopping = False
        with open(records, "wb") as kept:
            pending = b""
            while True:
                left = deadline - time.monotonic()
                if left <= 0 and daemon.poll() is None:
                    # SIGTERM first, as systemd stops it; SIGKILL if that did not do.
                    (daemon.kill if stopping else daemon.terminate)()
                    stopping, deadline = True, time.monotonic() + STOP_WAIT_S
                readable, _, _ = select.select([daemon.stdout], [], [], max(0.0, left))
                if not readable:
                    continue
                chunk = os.read(daemon.stdout.fileno(), 65536)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    kept.write(line + b"\n")
                    record = _record(line)
                    if record.get("event") == Event.DAEMON_STARTED and not stopping:
                        deadline = time.monotonic() + seconds
                    if record.get("event") == Event.TARGET_FOUND:
                        _go(watched)
                    if record.get("event") == Event.OOM_KILLED and not killed:
                        killed = True
                        deadline = min(deadline, time.monotonic() + AFTER_KILL_S)
                    _show(line, record, view)
        return daemon.wait(), killed
    finally:
        if daemon.poll() is None:
            daemon.kill()
        daemon.wait()


def _record(line: bytes) -> dict[str, Any]:
    """The record a line holds; a line that is none (not memdoor's) is shown as it came."""
    try:
        record = json.loads(line)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _go(watched: Workload) -> None:
    """The go line of a workload waiting for one; the others ignore it."""
    stdin = watched.proc.stdin
    if stdin is not None:
        with contextlib.suppress(OSError):
            stdin.write(b"\n")
            stdin.flush()


def _show(line: bytes, record: dict[str, Any], view: Optional[Formatter]) -> None:
    if view is None or not record:
        sys.stdout.buffer.write(line + b"\n")
    else:
        sys.stdout.write(view(record) + "\n")
    sys.stdout.flush()
