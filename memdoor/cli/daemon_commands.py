"""What `memdoor run`, `memdoor check-config` and `memdoor demo` do once parsed."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from typing import Optional

from memdoor.cli.daemon_bridge import report_config_error, run_daemon
from memdoor.cli.output import EX_IOERR, write_stdout
from memdoor.collect.memory import read_meminfo
from memdoor.collect.reading import Unreadable
from memdoor.config import EX_CONFIG, Config, ConfigError, load_config, render_effective

# The demo's child holds a little more than 1% of MemTotal (the lowest
# threshold), capped so that the demo never takes a large host's memory.
DEMO_CAP_MB = 1024


def _load(path: str) -> Optional[Config]:
    try:
        return load_config(path)
    except ConfigError as exc:
        report_config_error(exc)
        return None


def run_command(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EX_CONFIG
    return run_daemon(args.config, config, args.format)


def check_config_command(args: argparse.Namespace) -> int:
    if sys.stdout is None:
        return _check_config_without_stdout(args.path)
    config = _load(args.path)
    if config is None:
        return EX_CONFIG
    problem = write_stdout(render_effective(config))
    if problem is not None:
        return _unwritten(args.path, problem)
    return 0


def _unwritten(path: str, reason: str) -> int:
    print(
        f"memdoor check-config: {path} is valid, but the effective configuration "
        f"cannot be written to standard output: {reason}",
        file=sys.stderr,
    )
    return EX_IOERR


def _check_config_without_stdout(path: str) -> int:
    """fd 1 was closed before Python started (`>&-`): neither the effective configuration
    nor a config_invalid record has anywhere to go, so the verdict is given on stderr."""
    try:
        load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EX_CONFIG
    return _unwritten(path, "it is closed")


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


def demo_command(args: argparse.Namespace) -> int:
    """The daemon, for real, watching a process it starts itself: records within seconds."""
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
            return run_daemon(path, config, args.format)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        child.kill()
        child.wait()
