"""Summary records stay under 16 KiB for a huge process and say what they left out."""

from __future__ import annotations

import json

from memdoor.collect.tree import Ancestor
from memdoor.render.bounded import (
    LEVELS,
    RECORD_BUDGET,
    TREE_FARTHEST,
    TREE_NEAREST,
    bounded_cmdline,
    bounded_tree,
    snapshot_fields,
)
from memdoor.snapshot import take_snapshot
from tests.record_schema import validate_record


def envelope(body: dict) -> dict:
    return {
        "timestamp": "2026-11-24T19:30:18.905Z",
        "level": "warning",
        "event": "snapshot",
        "target": "big-target-name",
        "pid": 4194304,
        "schema_version": 1,
        "message": "big-target-name pid 4194304 RSS 300.0 MiB = 1.2% >= 1%",
        "threshold_percent": 1,
        "threshold_base": "system",
        **body,
    }


def test_summary_of_a_huge_process_fits_and_accounts_for_everything(spawn_workload) -> None:
    workload = spawn_workload("--mappings", "20000", "--tcp-pairs", "1000", "--sockets")
    snapshot = take_snapshot(workload.pid)
    assert snapshot.mappings is not None and len(snapshot.mappings) > 20000
    assert snapshot.connections is not None and len(snapshot.connections) >= 2000

    full = envelope(snapshot_fields(snapshot, "full"))
    summary = envelope(snapshot_fields(snapshot, "summary"))
    validate_record(full)
    validate_record(summary)
    assert len(json.dumps(full)) > 1_000_000
    assert len(json.dumps(summary, separators=(",", ":")).encode()) <= RECORD_BUDGET

    mappings = summary["mappings_summary"]
    assert mappings["total"]["count"] == len(snapshot.mappings)
    assert mappings["total"]["rss_kb"] == sum(m.rss_kb or 0 for m in snapshot.mappings)
    listed = sum(g["count"] for g in mappings["groups"])
    assert listed + mappings["omitted"]["count"] == len(snapshot.mappings)
    assert sum(g["size_kb"] for g in mappings["groups"]) + mappings["omitted"]["size_kb"] == sum(
        m.size_kb for m in snapshot.mappings
    )
    rss = [g["rss_kb"] for g in mappings["groups"]]
    assert rss == sorted(rss, reverse=True)

    connections = summary["connections_summary"]
    assert connections["total"] == len(snapshot.connections)
    assert sum(connections["by_state"].values()) == len(snapshot.connections)
    assert len(connections["listed"]) + connections["omitted"] == len(snapshot.connections)
    # Listeners come first: what the process serves matters more than one client.
    assert connections["listed"][0]["state"] == "LISTEN"


def test_a_huge_command_line_is_cut_and_marked(spawn_workload) -> None:
    workload = spawn_workload()
    snapshot = take_snapshot(workload.pid)
    long_cmdline = ["java", "-cp", "x" * 100_000, "Main"]
    body = snapshot_fields(snapshot, "summary", long_cmdline)
    assert body["process"]["cmdline"] == ["java", "-cp"]
    assert body["process"]["cmdline_truncated"] is True
    validate_record(envelope(body))


def test_a_deep_tree_keeps_its_nearest_parents_and_the_end_at_pid_1() -> None:
    tree = [Ancestor(pid, f"p{pid}") for pid in range(100, 0, -1)]
    assert bounded_tree(tree) == (tree[:TREE_NEAREST] + tree[-TREE_FARTHEST:], 84)
    shallow = tree[-(TREE_NEAREST + TREE_FARTHEST) :]
    assert bounded_tree(shallow) == (shallow, 0)


def test_the_command_line_is_bounded_in_bytes_and_in_arguments() -> None:
    limits = LEVELS[0]
    # 200 ten-character arguments are 2.6 KB of JSON: the byte bound holds first.
    kept, cut = bounded_cmdline(["a" * 10] * 200, limits)
    assert cut and len(kept) == limits.cmdline // len('"aaaaaaaaaa",')
    # Empty arguments cost 3 bytes each: the count bound holds first.
    kept, cut = bounded_cmdline([""] * 50_000, limits)
    assert cut and kept == [""] * limits.arguments
    # Bytes are counted escaped: "\x01" is six of them.
    kept, cut = bounded_cmdline(["\x01" * 100] * 10, limits)
    assert cut and len(kept) == 3
    # argv[0] stays whatever its size (record_fields cuts it like any long string).
    assert bounded_cmdline(["x" * 5000, "y"], limits) == (["x" * 5000], True)
    assert bounded_cmdline(["java", "Main"], limits) == (["java", "Main"], False)
