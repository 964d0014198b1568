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


def _totals(mappings: Iterable[Mapping]) -> dict[str, int]:
    count = size = rss = 0
    for m in mappings:
        count += 1
        size += m.size_kb
        rss += m.rss_kb or 0
    return {"count": count, "size_kb": size, "rss_kb": rss}


def summarize_mappings(mappings: Sequence[Mapping], top: int) -> dict[str, Any]:
    groups: dict[tuple[str, str], list[int]] = {}
    for m in mappings:
        entry = groups.setdefault(mapping_group(m), [0, 0, 0])
        entry[0] += 1
        entry[1] += m.size_kb
        entry[2] += m.rss_kb or 0
    ranked = sorted(groups.items(), key=lambda item: (-item[1][2], -item[1][1], item[0][1]))
    shown, rest = ranked[:top], ranked[top:]
    return {
        "total": _totals(mappings),
        "resident_known": all(m.rss_kb is not None for m in mappings),
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
