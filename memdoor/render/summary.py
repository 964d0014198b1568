"""Bounded renderings of the two sections that grow without limit: mappings and sockets.

A process with 20,000 mappings gives a record of several MB: over Loki's 256 KB
line limit, over the 16 KiB at which container runtimes split stdout, and
expensive in the journal. The summary keeps what answers "where did the memory
go" — mappings grouped by file or kind with count, size and resident size, the
largest groups by resident size — and says exactly what it left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from memdoor.process_text import note_escaped
from memdoor.procfs.maps import Mapping, mapping_group
from memdoor.procfs.net import Socket
from memdoor.render.snapshot_dict import connection_dict


def _group_totals(mappings: Iterable[Mapping]) -> tuple[dict[tuple[str, str], list[int]], bool]:
    """[count, size kB, resident kB] per group, and whether every resident size was known.

    Summed per path first and grouped once per distinct path: a process with
    20,000 mappings has a few hundred paths, and naming a mapping's group (a
    regex for thread stacks) once per mapping was most of the summary's cost.
    """
    per_path: dict[str, tuple[Mapping, list[int]]] = {}
    known = True
    for m in mappings:
        rss = m.rss_kb
        if rss is None:
            known = False
            rss = 0
        found = per_path.get(m.path)
        if found is None:
            per_path[m.path] = (m, [1, (m.end - m.start) // 1024, rss])
        else:
            totals = found[1]
            totals[0] += 1
            totals[1] += (m.end - m.start) // 1024
            totals[2] += rss
    groups: dict[tuple[str, str], list[int]] = {}
    for first, (count, size, rss) in per_path.values():
        entry = groups.setdefault(mapping_group(first), [0, 0, 0])
        entry[0] += count
        entry[1] += size
        entry[2] += rss
    return groups, known


def summarize_mappings(mappings: Sequence[Mapping], top: int) -> dict[str, Any]:
    groups, known = _group_totals(mappings)
    ranked = sorted(groups.items(), key=lambda item: (-item[1][2], -item[1][1], item[0][1]))
    shown, rest = ranked[:top], ranked[top:]
    return {
        "total": {
            "count": sum(v[0] for v in groups.values()),
            "size_kb": sum(v[1] for v in groups.values()),
            "rss_kb": sum(v[2] for v in groups.values()),
        },
        "resident_known": known,
        "groups": [
            note_escaped({"kind": kind, "name": name, "count": c, "size_kb": s, "rss_kb": r})
            for (kind, name), (c, s, r) in shown
        ],
        "omitted": {
            "groups": len(rest),
            "count": sum(v[0] for _k, v in rest),
            "size_kb": sum(v[1] for _k, v in rest),
            "rss_kb": sum(v[2] for _k, v in rest),
        },
    }


def _connection_rank(sock: Socket) -> tuple[int, int]:
    """Listeners first (what the process serves), then the fullest queues."""
    return (0 if sock.state == "LISTEN" else 1, -(sock.tx_queue + sock.rx_queue))


def summarize_connections(connections: Sequence[Socket], top: int) -> dict[str, Any]:
    by_state: dict[str, int] = {}
    for sock in connections:
        key = f"{sock.protocol}{'6' if sock.family == 6 else ''} {sock.state}"
        by_state[key] = by_state.get(key, 0) + 1
    ranked = sorted(connections, key=_connection_rank)
    return {
        "total": len(connections),
        "by_state": dict(sorted(by_state.items())),
        "listed": [connection_dict(s) for s in ranked[:top]],
        "omitted": max(0, len(connections) - top),
    }
