"""A snapshot's mapping groups by resident size, and how each grew since an earlier one.

Summaries carry the largest groups (mappings_summary.groups, the rest counted
in `omitted`); full snapshots carry every mapping, grouped here the way the
summary groups them (memdoor.procfs.maps.path_group). A group missing from
the earlier snapshot is new only if that snapshot listed every group.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from memdoor.procfs.maps import path_group
from memdoor.views.text import number, section

GroupKey = tuple[str, str]


@dataclass(frozen=True)
class Groups:
    sizes: dict[GroupKey, tuple[int, float, float]]  # count, size_kb, rss_kb
    complete: bool


@dataclass(frozen=True)
class GroupRow:
    kind: str
    name: str
    count: int
    size_kb: float
    rss_kb: float
    growth_kb: Optional[float]  # None: unknown (no earlier snapshot, or it left the group out)
    new: bool


def groups_of(snapshot: Mapping[str, Any]) -> Optional[Groups]:
    summary = section(snapshot, "mappings_summary")
    if summary:
        sizes: dict[GroupKey, tuple[int, float, float]] = {}
        for group in summary.get("groups") or []:
            if isinstance(group, dict):
                key = (str(group.get("kind", "?")), str(group.get("name", "?")))
                count = number(group.get("count")) or 0
                sizes[key] = (
                    int(count),
                    number(group.get("size_kb")) or 0,
                    number(group.get("rss_kb")) or 0,
                )
        omitted = number(section(summary, "omitted").get("groups"))
        return Groups(sizes, omitted == 0)
    mappings = snapshot.get("mappings")
    if not isinstance(mappings, list):
        return None
    totals: dict[GroupKey, list[float]] = {}
    for mapping in mappings:
        if isinstance(mapping, dict):
            entry = totals.setdefault(path_group(str(mapping.get("path") or "")), [0, 0, 0])
            entry[0] += 1
            entry[1] += number(mapping.get("size_kb")) or 0
            entry[2] += number(mapping.get("rss_kb")) or 0
    return Groups({k: (int(c), s, r) for k, (c, s, r) in totals.items()}, True)


def group_rows(
    last: Mapping[str, Any], earlier: Optional[Mapping[str, Any]], top: int
) -> list[GroupRow]:
    """The top groups of last by resident size, with growth against earlier when known."""
    now = groups_of(last)
    if now is None:
        return []
    before = None if earlier is None else groups_of(earlier)
    ranked = sorted(now.sizes.items(), key=lambda item: (-item[1][2], -item[1][1], item[0][1]))
    rows = []
    for (kind, name), (count, size, rss) in ranked[:top]:
        growth: Optional[float] = None
        new = False
        if before is not None and (kind, name) in before.sizes:
            growth = rss - before.sizes[(kind, name)][2]
        elif before is not None and before.complete:
            growth, new = rss, True
        rows.append(GroupRow(kind, name, count, size, rss, growth, new))
    return rows
