"""What the daemon costs at rest: many targets below threshold, polled every second.

Starts N sleeping processes, a daemon watching each as its own target (pid,
threshold 99, interval 1 s), lets it settle, then measures its CPU (percent of
one core, from /proc/PID/stat utime+stime) and RSS over the run.

    python benchmarks/daemon.py [--targets 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memdoor.lab.python_child import IMPORT_ROOT, module_command

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--settle", type=float, default=5)
    args = parser.parse_args()
    sleepers = [subprocess.Popen(["sleep", "100000"]) for _ in range(args.targets)]
    daemon = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "bench.toml"
            config.write_text(
                "".join(
                    f'[[target]]\nname = "t{i}"\npid = {p.pid}\nthreshold = 99\ninterval = 1.0\n'
                    for i, p in enumerate(sleepers)
                )
            )
            daemon = subprocess.Popen(
                module_command("memdoor", "run", "--config", str(config)),
                stdout=subprocess.PIPE,
                cwd=IMPORT_ROOT,
                text=True,
            )
            assert daemon.stdout is not None
            found = 0
            while found < args.targets:
                record = json.loads(daemon.stdout.readline())
                found += record["event"] == "target_found"
            time.sleep(args.settle)
            cpu_before, wall_before = cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(args.seconds)
            cpu = cpu_seconds(daemon.pid) - cpu_before
            wall = time.monotonic() - wall_before
            print(f"{args.targets} targets below threshold, 1 s interval, {wall:.0f} s measured")
            print(f"daemon CPU: {cpu * 100 / wall:.2f}% of one core ({cpu:.2f} s CPU)")
            print(f"daemon RSS: {rss_kb(daemon.pid) / 1024:.1f} MiB")
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        for sleeper in sleepers:
            sleeper.kill()
            sleeper.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
