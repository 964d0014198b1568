"""How much a snapshot costs: one full snapshot and one below-threshold poll.

Builds a target with 20,000 mappings and 2,000 loopback TCP connections (the
lab workload), then prints CPU milliseconds (median of several) for a full
snapshot and for the per-tick poll, and the collector's peak RSS.

    python benchmarks/snapshot.py [--runs 7] [--mappings 20000] [--connections 2000]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from typing import Callable

from memdoor.collect.identity import read_stat
from memdoor.collect.memory import read_rss_kb
from memdoor.lab.workload_parent import start_workload
from memdoor.snapshot import take_snapshot
from memdoor.system_memory import MemTotal


def cpu_ms(action: Callable[[], object], repeat: int = 1) -> float:
    start = time.process_time()
    for _ in range(repeat):
        action()
    return (time.process_time() - start) * 1000 / repeat


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--mappings", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args()
    workload = start_workload(
        "--touch-mb", 300, "--mappings", args.mappings, "--tcp-pairs", args.connections // 2
    )
    try:
        pid = workload.pid
        start_ticks = read_stat(pid).start_ticks  # type: ignore[union-attr]
        snapshot = take_snapshot(pid, expected_start_ticks=start_ticks)
        mem_total = MemTotal()

        def poll() -> None:
            read_stat(pid)
            read_rss_kb(pid)
            mem_total.kb()

        full = [
            cpu_ms(lambda: take_snapshot(pid, expected_start_ticks=start_ticks))
            for _ in range(args.runs)
        ]
        polls = [cpu_ms(poll, repeat=1000) for _ in range(args.runs)]
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            f"target: pid {pid}, {len(snapshot.mappings or [])} mappings, "
            f"{len(snapshot.connections or [])} TCP/UDP sockets, "
            f"RSS {snapshot.memory.rss_kb if snapshot.memory else '?'} kB"
        )
        print(
            f"full snapshot:        median {statistics.median(full):8.2f} ms CPU "
            f"(min {min(full):.2f}, max {max(full):.2f}, {args.runs} runs)"
        )
        print(
            f"below-threshold poll: median {statistics.median(polls):8.4f} ms CPU "
            "(stat + statm + cached MemTotal)"
        )
        print(f"collector peak RSS:   {peak_kb / 1024:.1f} MiB")
        print(f"problems: {[p.to_dict() for p in snapshot.problems] or 'none'}")
    finally:
        workload.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
