"""`memdoor run`, `memdoor check-config` and `memdoor demo`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from typing import NoReturn, Optional

from memdoor.cli.usage import EX_USAGE, USAGE
from memdoor.collect.memory import read_meminfo
from memdoor.collect.reading import Unreadable
from memdoor.config import EX_CONFIG, Config, ConfigError, load_config, render_effective
from memdoor.daemon import Daemon
from memdoor.emitter import DaemonRecords
from memdoor.records import RecordLog
from memdoor.sinks.dispatch import Dispatcher
from memdoor.sinks.stdout import StdoutSink

# The demo's child holds a little more than 1% of MemTotal (the lowest
# threshold), capped so that the demo never takes a large host's memory.
DEMO_CAP_MB = 1024


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"memdoor {self.prog.split()[-1]}: {message}\n{USAGE}", file=sys.stderr)
        sys.exit(EX_USAGE)


def _report_config_error(exc: ConfigError) -> None:
    """stderr for the operator, one JSON record for whatever collects the output."""
    print(str(exc), file=sys.stderr, flush=True)
    DaemonRecords(RecordLog(Dispatcher(StdoutSink(), None))).config_invalid(exc, "not started")


def _load(path: str) -> Optional[Config]:
    try:
        return load_config(path)
    except ConfigError as exc:
        _report_config_error(exc)
        return None


def run_daemon_command(argv: list[str]) -> int:
    command, rest = argv[0], argv[1:]
    try:
        if command == "run":
            return _run(rest)
        if command == "check-config":
            return _check_config(rest)
        return _demo(rest)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EX_USAGE


def _run(argv: list[str]) -> int:
    parser = _Parser(prog="memdoor run", add_help=False)
    parser.add_argument("--config", "-c", required=True, metavar="FILE")
    args = parser.parse_args(argv)
    config = _load(args.config)
    if config is None:
        return EX_CONFIG
    return run_daemon(args.config, config)


def run_daemon(path: str, config: Config) -> int:
    return asyncio.run(_serve(path, config))


async def _serve(path: str, config: Config) -> int:
    return await Daemon(path, config).run()


def _check_config(argv: list[str]) -> int:
    parser = _Parser(prog="memdoor check-config", add_help=False)
    parser.add_argument("path", metavar="FILE")
    args = parser.parse_args(argv)
    config = _load(args.path)
    if config is None:
        return EX_CONFIG
    sys.stdout.write(render_effective(config))
    return 0


DEMO_CHILD = textwrap.dedent(
    """
    import mmap, sys, time
    size = int(sys.argv[1]) << 20
    block = mmap.mmap(-1, size)
    for offset in range(0, size, 4096):
        block[offset] = 1
    print("ready", flush=True)
    time.sleep(600)
    """
)


def _demo(argv: list[str]) -> int:
    """The daemon, for real, watching a process it starts itself: records within seconds."""
    parser = _Parser(prog="memdoor demo", add_help=False)
    parser.add_argument("--seconds", type=float, default=6.0)
    args = parser.parse_args(argv)
    meminfo = read_meminfo()
    if isinstance(meminfo, Unreadable):
        print(f"memdoor demo: cannot read {meminfo.what}: {meminfo.detail}", file=sys.stderr)
        return 1
    size_mb = min(DEMO_CAP_MB, meminfo.total_kb * 15 // 1000 // 1024 + 1)
    child = subprocess.Popen(
        [sys.executable, "-c", DEMO_CHILD, str(size_mb)], stdout=subprocess.PIPE, text=True
    )
    try:
        if child.stdout is None or child.stdout.readline().strip() != "ready":
            print("memdoor demo: the demo process did not start", file=sys.stderr)
            return 1
        with tempfile.TemporaryDirectory(prefix="memdoor-demo-") as tmp:
            path = os.path.join(tmp, "demo.toml")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(
                    f'[[target]]\nname = "demo"\npid = {child.pid}\nthreshold = 1\n'
                    'interval = 1.0\nsections = ["memory", "oom", "tree", "connections"]\n'
                )
            config = _load(path)
            if config is None:
                return EX_CONFIG
            signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGTERM))
            signal.setitimer(signal.ITIMER_REAL, args.seconds)
            return run_daemon(path, config)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        child.kill()
        child.wait()
