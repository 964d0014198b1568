"""Bounded renderings of the two sections that grow without limit: mappings and sockets.

A process with 20,000 mappings gives a record of several MB: over Loki's 256 KB
line limit, over the 16 KiB at which container runtimes split stdout, and
expensive in the journal. The summary keeps what answers "where did the memory
go" — mappings grouped by file or kind with count, size and resident size, the
largest groups by resident size — and says exactly what it left out. Given
the process's previous full snapshot, it also says how each group changed since:
"which mapping grew" without diffing two records by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Optional

from memdoor.process_text import note_escaped
from memdoor.procfs.mapping_table import MappingTable
from memdoor.procfs.maps import Mapping, path_group
from memdoor.procfs.net import Socket
from memdoor.render.snapshot_dict import connection_dict
from memdoor.vocabulary import rfc3339


def _columns(
    mappings: Sequence[Mapping],
) -> Iterable[tuple[str, int, int, Optional[int]]]:
    """Each mapping's path, start, end and resident kB; from a MappingTable's
    columns, without building its rows."""
    if isinstance(mappings, MappingTable):
        return zip(mappings.paths, mappings.starts, mappings.ends, mappings.rss_kb)
    return ((m.path, m.start, m.end, m.rss_kb) for m in mappings)


def _group_totals(
    mappings: Sequence[Mapping],
) -> tuple[dict[tuple[str, str], list[int]], bool]:
    """[count, size kB, resident kB] per group, and whether every resident size was known.

    Summed per path first and grouped once per distinct path: a process with
    20,000 mappings has a few hundred paths, and naming a mapping's group (a
    regex for thread stacks) once per mapping was most of the summary's cost.
    """
    per_path: dict[str, list[int]] = {}
    known = True
    for path, start, end, rss in _columns(mappings):
        if rss is None:
            known = False
            rss = 0
        totals = per_path.get(path)
        if totals is None:
            per_path[path] = [1, (end - start) // 1024, rss]
        else:
            totals[0] += 1
            totals[1] += (end - start) // 1024
            totals[2] += rss
    groups: dict[tuple[str, str], list[int]] = {}
    for path, (count, size, rss) in per_path.items():
        entry = groups.setdefault(path_group(path), [0, 0, 0])
        entry[0] += count
        entry[1] += size
        entry[2] += rss
    return groups, known


class MappingGroups:
    """An earlier snapshot's group totals, worked out once for every level a record
    is rendered at."""

    def __init__(self, mappings: Sequence[Mapping], taken_at: float) -> None:
        self.totals, self.resident_known = _group_totals(mappings)
        self.taken_at = taken_at
        self.size_kb = sum(v[1] for v in self.totals.values())
        self.rss_kb = sum(v[2] for v in self.totals.values())


def _changes(
    size_kb: int, rss_kb: int, earlier: Optional[list[int]], rss_known: bool
) -> dict[str, Optional[int]]:
    """A group's change in size and resident size; a group that was not there grew from 0."""
    size_then, rss_then = (0, 0) if earlier is None else (earlier[1], earlier[2])
    return {
        "size_kb_change": size_kb - size_then,
        "rss_kb_change": rss_kb - rss_then if rss_known else None,
    }


def summarize_mappings(
    mappings: Sequence[Mapping], top: int, before: Optional[MappingGroups] = None
) -> dict[str, Any]:
    """before: the previous full snapshot's groups; each group listed, and the total,
    then carry its change since (rss_kb_change is null where a resident size was unknown)."""
    groups, known = _group_totals(mappings)
    ranked = sorted(groups.items(), key=lambda item: (-item[1][2], -item[1][1], item[0][1]))
    shown, rest = ranked[:top], ranked[top:]
    total: dict[str, Any] = {
        "count": sum(v[0] for v in groups.values()),
        "size_kb": sum(v[1] for v in groups.values()),
        "rss_kb": sum(v[2] for v in groups.values()),
    }
    listed = []
    for (kind, name), (c, s, r) in shown:
        group: dict[str, Any] = {"kind": kind, "name": name, "count": c, "size_kb": s, "rss_kb": r}
        if before is not None:
            rss_known = known and before.resident_known
            group.update(_changes(s, r, before.totals.get((kind, name)), rss_known))
        listed.append(note_escaped(group))
    summary: dict[str, Any] = {"total": total, "resident_known": known}
    if before is not None:
        summary["changes_since"] = rfc3339(before.taken_at)
        before_total = [0, before.size_kb, before.rss_kb]
        total.update(
            _changes(
                total["size_kb"], total["rss_kb"], before_total, known and before.resident_known
            )
        )
    return {
        **summary,
        "groups": listed,
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
