"""The kept snapshot, packed far below the threshold: records read from it are unchanged."""

from __future__ import annotations

import asyncio
import json

import pytest

from memdoor.collect.liveness import Liveness, Verdict
from memdoor.records import RecordLog
from memdoor.render.bounded import snapshot_fields
from memdoor.snapshot import Snapshot, take_snapshot
from memdoor.vocabulary import Detail
from memdoor.watch.evidence import PackedSnapshot
from memdoor.watcher import ProcessWatcher
from tests.record_schema import validate_record
from tests.test_watcher import (
    LineCollector,
    identity_of,
    make_state,
    one_and_a_half_percent_of_ram_mb,
    plant_kill,
)
from tests.workload_fixture import SpawnWorkload


@pytest.mark.parametrize("detail", ["summary", "full"])
def test_a_packed_snapshot_unpacks_equal_and_renders_the_same(
    spawn_workload: SpawnWorkload, detail: Detail
) -> None:
    workload = spawn_workload("--touch-mb", "8", "--mappings", "300", "--tcp-pairs", "5")
    snapshot = take_snapshot(workload.pid)
    assert snapshot.identity is not None and snapshot.mappings and snapshot.connections
    packed = PackedSnapshot(snapshot)
    unpacked = packed.unpack()
    assert packed.taken_at == snapshot.taken_at
    assert unpacked == snapshot and unpacked is not snapshot
    cmdline = workload.proc.args
    assert json.dumps(snapshot_fields(unpacked, detail, cmdline)) == json.dumps(
        snapshot_fields(snapshot, detail, cmdline)
    )


def test_snapshots_packed_against_the_first_ones_dictionary_unpack_equal(
    spawn_workload: SpawnWorkload,
) -> None:
    small = spawn_workload("--touch-mb", "1")
    large = spawn_workload("--touch-mb", "8", "--mappings", "200", "--tcp-pairs", "3")
    snapshots = [take_snapshot(small.pid), take_snapshot(large.pid), take_snapshot(small.pid)]
    assert all(snapshot.identity is not None for snapshot in snapshots)
    packed = [PackedSnapshot(snapshot) for snapshot in snapshots]
    # One dictionary for all: whichever snapshot was packed first in this process.
    assert len({id(one._zdict) for one in packed}) == 1
    for one, snapshot in zip(packed, snapshots):
        assert one.unpack() == snapshot


def test_far_below_the_threshold_the_kill_record_comes_from_the_packed_snapshot(
    spawn_workload: SpawnWorkload,
) -> None:
    workload = spawn_workload("--touch-mb", "32", "--mappings", "100")
    state = make_state(workload.pid, threshold=99)
    collector = LineCollector()
    state.records.writer = RecordLog(collector)
    watcher = ProcessWatcher(state, identity_of(workload.pid))
    asyncio.run(watcher.tick())
    assert isinstance(watcher.evidence.kept, PackedSnapshot)
    kept = watcher.evidence.last
    assert isinstance(kept, Snapshot) and kept.memory is not None
    assert kept.memory.rss_kb is not None and kept.memory.rss_kb >= 32 * 1024
    plant_kill(state, workload.pid)
    asyncio.run(watcher._ended(Liveness(Verdict.EXITED, None, "gone")))
    killed = json.loads(collector.lines[-1])
    assert killed["event"] == "oom_killed"
    validate_record(killed)
    last = killed["last_snapshot"]
    assert last.pop("age_ms") >= 0
    rendered = snapshot_fields(kept, "summary", watcher.records._cmdline())
    assert last == json.loads(json.dumps(rendered))
    assert last["mappings_summary"]["total"]["count"] >= 100


def test_above_the_threshold_the_kept_snapshot_is_kept_as_taken(
    spawn_workload: SpawnWorkload,
) -> None:
    workload = spawn_workload("--touch-mb", str(one_and_a_half_percent_of_ram_mb()))
    state = make_state(workload.pid, threshold=1)
    watcher = ProcessWatcher(state, identity_of(workload.pid))
    asyncio.run(watcher.tick())
    kept = watcher.evidence.kept
    assert isinstance(kept, Snapshot) and kept.identity is not None
    assert watcher.evidence.last is kept
