"""What the daemon costs at rest: many targets below threshold, polled every second.

Starts N sleeping processes, a daemon watching each as its own target (pid,
threshold 99, interval 1 s), lets it settle, then measures its CPU (percent of
one core, from /proc/PID/stat utime+stime) over the run, and its memory at the
end: RSS, its anonymous and file-backed parts, and PSS.

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


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS with its anonymous and file-backed parts (status), and PSS (smaps_rollup).

    The file-backed part is mostly the interpreter's and libraries' code, shared
    with every other process that maps them; PSS charges the daemon its share.
    """
    figures = {}
    for name in ("status", "smaps_rollup"):
        with open(f"/proc/{pid}/{name}") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "Pss"):
                    figures[key] = int(rest.split()[0])
    return figures


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
            memory = {key: kb / 1024 for key, kb in memory_kb(daemon.pid).items()}
            print(
                f"daemon RSS: {memory['VmRSS']:.1f} MiB (anonymous {memory['RssAnon']:.1f}, "
                f"files {memory['RssFile']:.1f}); PSS {memory['Pss']:.1f} MiB"
            )
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
