"""How much a snapshot costs: a full snapshot by each path, and one below-threshold poll.

Builds a target with 20,000 mappings and 2,000 loopback TCP connections (the
lab workload), then prints CPU milliseconds (median of several) for a full
snapshot with the mappings' resident sizes read each way: maps plus one
ioctl(PAGEMAP_SCAN) (Linux 6.7+), and smaps (older kernels, and the fallback);
by pagemap both with every mapping's row built (detail "full", the seed) and
with the rows left unbuilt (detail "summary": the groups come from columns).
Each line splits the CPU into user (Python) and sys (the kernel generating
/proc files), and says what the mappings section alone cost. The sockets
section is measured alone both ways too: a NETLINK_SOCK_DIAG dump and the
/proc/PID/net text. The variants run alternately, so a machine that gets
busier half-way weighs on all alike. Then the record's mapping summary, the
maps text's parse alone (the Python of the mappings section), the seed's text
report, the per-tick poll and the collector's peak RSS. The user/sys split of
one run is the kernel's estimate (it moves by a few ms between runs of the
same snapshot); the total is the figure to compare.

    python benchmarks/snapshot.py [--runs 9] [--mappings 20000] [--connections 2000]
"""

from __future__ import annotations

import argparse
import functools
import resource
import statistics
import sys
from typing import Callable, NamedTuple
from unittest import mock

from memdoor.collect.connections import read_connections
from memdoor.collect.identity import read_stat
from memdoor.collect.memory import read_rss_kb
from memdoor.collect.pagemap import (
    PAGE_SIZE,
    first_and_last_address,
    read_resident_mappings,
    read_smaps_mappings,
    scan_present,
)
from memdoor.collect.reading import Unreadable, read_bytes
from memdoor.lab.workload_parent import start_workload
from memdoor.procfs.mapping_table import collector_paused
from memdoor.procfs.pagemap import parse_maps_with_resident
from memdoor.render.seed_text import full_report
from memdoor.render.summary import summarize_mappings
from memdoor.snapshot import Snapshot, take_snapshot
from memdoor.system_memory import MemTotal

ReadMappings = Callable[[int, list[Unreadable], str], object]


class Path(NamedTuple):
    read: ReadMappings
    # Whether the snapshot builds every mapping's row (detail "full", the seed).
    rows: bool


PATHS: dict[str, Path] = {
    "pagemap": Path(read_resident_mappings, True),
    "pagemap, rows unbuilt": Path(functools.partial(read_resident_mappings, rows=False), False),
    "smaps": Path(read_smaps_mappings, True),
}
SOCKET_PATHS = {"sock_diag": True, "/proc/net": False}


class Cost(NamedTuple):
    user_ms: float
    sys_ms: float

    @property
    def total_ms(self) -> float:
        return self.user_ms + self.sys_ms


def cpu(action: Callable[[], object], repeat: int = 1) -> Cost:
    """User and system CPU of this process, per call: getrusage counts both apart."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeat):
        action()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return Cost(
        (after.ru_utime - before.ru_utime) * 1000 / repeat,
        (after.ru_stime - before.ru_stime) * 1000 / repeat,
    )


def median(costs: list[Cost]) -> Cost:
    """The run whose total is the median, so its user/sys split is one real run's."""
    return sorted(costs, key=lambda c: c.total_ms)[len(costs) // 2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
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

        def snapshot_by(path: Path) -> Snapshot:
            def read(tid: int, problems: list[Unreadable], proc: str, rows: bool) -> object:
                return path.read(tid, problems, proc)

            with mock.patch("memdoor.snapshot.read_resident_mappings", read):
                return take_snapshot(pid, expected_start_ticks=start_ticks, mapping_rows=path.rows)

        def connections_by(dump: bool) -> object:
            with mock.patch("memdoor.collect.connections.in_own_network_namespace") as same:
                same.return_value = dump
                return read_connections(pid, [])

        full: dict[str, list[Cost]] = {path: [] for path in PATHS}
        section: dict[str, list[Cost]] = {path: [] for path in PATHS}
        sockets: dict[str, list[Cost]] = {path: [] for path in SOCKET_PATHS}
        for _ in range(args.runs):
            for name, path in PATHS.items():
                section[name].append(cpu(functools.partial(path.read, pid, [], "/proc")))
                full[name].append(cpu(functools.partial(snapshot_by, path)))
            for name, dump in SOCKET_PATHS.items():
                sockets[name].append(cpu(functools.partial(connections_by, dump)))
        sources = {name: snapshot_by(path).mappings_source for name, path in PATHS.items()}
        unbuilt = snapshot_by(PATHS["pagemap, rows unbuilt"])
        summary = median(
            [cpu(lambda: summarize_mappings(unbuilt.mappings or [], 20)) for _ in range(args.runs)]
        )
        seed = median([cpu(lambda: full_report(snapshot, "/exe")) for _ in range(args.runs)])
        maps = read_bytes(f"/proc/{pid}/maps")
        assert isinstance(maps, bytes)
        vector = scan_present(f"/proc/{pid}/pagemap", *first_and_last_address(maps))
        assert isinstance(vector, bytes)

        def parse(rows: bool) -> None:
            with collector_paused():
                parse_maps_with_resident(maps, PAGE_SIZE, vector, rows)

        parses = {
            rows: median([cpu(functools.partial(parse, rows)) for _ in range(args.runs)])
            for rows in (False, True)
        }
        polls = [cpu(poll, repeat=1000).total_ms for _ in range(args.runs)]
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(
            f"target: pid {pid}, {len(snapshot.mappings or [])} mappings, "
            f"{len(snapshot.connections or [])} TCP/UDP sockets, "
            f"RSS {snapshot.memory.rss_kb if snapshot.memory else '?'} kB"
        )
        print(f"full snapshot, median of {args.runs} runs each, the paths alternating:")
        for name in PATHS:
            cost, alone = median(full[name]), median(section[name])
            totals = [c.total_ms for c in full[name]]
            print(
                f"  {name:21} {cost.total_ms:7.2f} ms CPU = user {cost.user_ms:6.2f} + "
                f"sys {cost.sys_ms:6.2f} (kernel {100 * cost.sys_ms / cost.total_ms:3.0f}%); "
                f"min {min(totals):.2f}, max {max(totals):.2f}; mappings section alone "
                f"{alone.total_ms:6.2f} (user {alone.user_ms:.2f} + sys {alone.sys_ms:.2f}); "
                f"mappings_source {sources[name]}"
            )
        print("sockets section alone (fd links and the tables), median of the same runs:")
        for name in SOCKET_PATHS:
            cost = median(sockets[name])
            print(
                f"  {name:21} {cost.total_ms:7.2f} ms CPU = user {cost.user_ms:6.2f} + "
                f"sys {cost.sys_ms:6.2f} (kernel {100 * cost.sys_ms / cost.total_ms:3.0f}%)"
            )
        print(
            f"mapping summary of a record (from the unbuilt rows' columns): "
            f"{summary.total_ms:.2f} ms CPU"
        )
        print(
            "maps text and scan vector parsed alone (no reads): "
            f"{parses[False].total_ms:.2f} ms CPU as columns, "
            f"{parses[True].total_ms:.2f} ms with every mapping's row"
        )
        print(f"seed text report (every mapping and socket listed): {seed.total_ms:.2f} ms CPU")
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
