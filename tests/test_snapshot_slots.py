"""Routine snapshots (far below the threshold) wait for a slot; an urgent one does not."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from memdoor.watch import evidence as evidence_module
from memdoor.watch.evidence import Taken
from memdoor.watcher import ProcessWatcher
from memdoor.worker_threads import SNAPSHOT_THREADS
from tests.test_watcher import identity_of, make_state
from tests.workload_fixture import SpawnWorkload

ROUTINE = SNAPSHOT_THREADS + 3


def test_routine_snapshots_wait_for_a_slot_and_an_urgent_one_goes_ahead(
    spawn_workload: SpawnWorkload, monkeypatch: pytest.MonkeyPatch
) -> None:
    workload = spawn_workload()
    state = make_state(workload.pid, threshold=99)
    real_take = evidence_module._take_snapshot
    entered: list[bool] = []  # pack, for each snapshot a worker thread started
    release = threading.Event()

    def held_take(pack: bool, *args: Any) -> Any:
        entered.append(pack)
        assert release.wait(10)
        return real_take(pack, *args)

    monkeypatch.setattr(evidence_module, "_take_snapshot", held_take)

    async def scenario() -> tuple[list[bool], list[object]]:
        loop = asyncio.get_running_loop()
        watchers = [ProcessWatcher(state, identity_of(workload.pid)) for _ in range(ROUTINE + 1)]
        routine = [loop.create_task(w.evidence.take(1, pack=True)) for w in watchers[:-1]]
        await asyncio.sleep(0.2)
        urgent = loop.create_task(watchers[-1].evidence.take(1, force=True))
        for _ in range(500):
            if len(entered) > SNAPSHOT_THREADS:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # time for any routine snapshot that should wait not to
        started = list(entered)
        release.set()
        outcomes = await asyncio.wait_for(asyncio.gather(*routine, urgent), 30)
        release.clear()
        entered.clear()
        return started, outcomes

    # Twice, each time in a new event loop, as tests and reloads do: the slots
    # follow the running loop.
    for _ in range(2):
        started, outcomes = asyncio.run(scenario())
        assert started == [True] * SNAPSHOT_THREADS + [False]
        assert all(isinstance(outcome, Taken) for outcome in outcomes)
