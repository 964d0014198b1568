"""Growth in the records: the ring's arithmetic on fixed ticks, and real processes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.collect.cgroup import find_cgroup_mounts
from memdoor.collect.reading import Unreadable
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.unavailable import LabUnavailable
from memdoor.oom.kernel_log import KernelLog
from memdoor.system_memory import MemTotal
from memdoor.vocabulary import MeasuredBase
from memdoor.watch.context import Services
from memdoor.watch.growth import MINUTE_S, SPACING_S, GrowthRing
from memdoor.watcher import ProcessWatcher
from tests.procfs.recorded import fuzz
from tests.record_schema import validate_record
from tests.test_watcher import identity_of, log_of, make_state, one_and_a_half_percent_of_ram_mb

LIMIT_KB = 1_000_000


def test_one_tick_gives_no_rate_and_no_estimate() -> None:
    ring = GrowthRing()
    ring.add("system", 10.0, 5000)
    growth = ring.growth("system", LIMIT_KB).to_dict()
    assert growth == {
        "last_interval_kb_per_s": None,
        "last_interval_s": None,
        "last_minute_kb_per_s": None,
        "last_minute_s": None,
        "limit_kb": LIMIT_KB,
        "seconds_to_limit": None,
    }


def test_steady_growth_gives_its_rate_and_the_time_left() -> None:
    ring = GrowthRing()
    for second in range(30):
        ring.add("cgroup", 100.0 + second, 1000 + 250 * second)
    growth = ring.growth("cgroup", 20_000)
    assert growth.last_interval_kb_per_s == 250 and growth.last_interval_s == 1
    assert growth.last_minute_kb_per_s == 250 and growth.last_minute_s == 29
    last_kb = 1000 + 250 * 29
    assert growth.seconds_to_limit == pytest.approx((20_000 - last_kb) / 250)


def test_a_flat_or_shrinking_figure_has_no_time_to_the_limit() -> None:
    for step in (0, -100):
        ring = GrowthRing()
        for second in range(5):
            ring.add("system", float(second), 50_000 + step * second)
        growth = ring.growth("system", LIMIT_KB)
        assert growth.last_minute_kb_per_s == step and growth.seconds_to_limit is None


def test_the_minute_forgets_what_came_before_it() -> None:
    """Fast growth two minutes ago, flat for the last minute and a half: the minute is flat."""
    ring = GrowthRing()
    at = 0.0
    for kb in range(0, 100_000, 10_000):
        ring.add("system", at, kb)
        at += 1
    for _ in range(900):
        ring.add("system", at, 100_000)
        at += 0.1
    growth = ring.growth("system", LIMIT_KB)
    assert growth.last_minute_kb_per_s == 0
    assert growth.last_minute_s is not None and growth.last_minute_s >= MINUTE_S - SPACING_S
    assert growth.last_minute_s <= MINUTE_S


def test_each_base_keeps_its_own_figures() -> None:
    ring = GrowthRing()
    ring.add("system", 0.0, 1000)
    ring.add("cgroup", 0.5, 900_000)
    ring.add("system", 1.0, 3000)
    assert ring.growth("system", LIMIT_KB).last_interval_kb_per_s == 2000
    assert ring.growth("cgroup", LIMIT_KB).last_interval_kb_per_s is None


def ring_of(
    base: MeasuredBase, ticks: list[tuple[float, int]]
) -> tuple[GrowthRing, list[tuple[float, int]]]:
    """A ring given each tick (seconds since the one before, kB), and the (time, kB) added."""
    ring = GrowthRing()
    at, seen = 0.0, []
    for step, kb in ticks:
        at += step
        ring.add(base, at, kb)
        seen.append((at, kb))
    return ring, seen


@fuzz
@given(st.lists(st.tuples(st.floats(0.01, 30), st.integers(0, 10**8)), min_size=2, max_size=200))
def test_rates_are_the_slopes_between_kept_ticks(ticks: list[tuple[float, int]]) -> None:
    ring, seen = ring_of("system", ticks)
    growth = ring.growth("system", LIMIT_KB)
    (t0, v0), (t1, v1) = seen[-2], seen[-1]
    assert growth.last_interval_kb_per_s == pytest.approx((v1 - v0) / (t1 - t0))
    span = growth.last_minute_s
    assert span is not None and 0 < span <= MINUTE_S
    start = next(kb for t, kb in seen if t == pytest.approx(t1 - span))
    assert growth.last_minute_kb_per_s == pytest.approx((v1 - start) / span)
    growing = growth.last_minute_kb_per_s is not None and growth.last_minute_kb_per_s > 0
    assert (growth.seconds_to_limit is not None) == growing


@fuzz
@given(st.lists(st.tuples(st.floats(0.01, 30), st.integers(0, 10**8)), min_size=2, max_size=40))
def test_the_last_interval_is_exactly_the_last_two_ticks(ticks: list[tuple[float, int]]) -> None:
    ring, seen = ring_of("cgroup", ticks)
    growth = ring.growth("cgroup", LIMIT_KB)
    (t0, v0), (t1, v1) = seen[-2], seen[-1]
    assert growth.last_interval_kb_per_s == (v1 - v0) / (t1 - t0)
    assert growth.last_interval_s == t1 - t0


async def ticks(watcher: ProcessWatcher, seconds: float) -> None:
    """The watcher's ticks for a while, spaced by its own delays."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end and watcher.ended is None:
        await asyncio.sleep(await watcher.tick())


def records_of(state: Any, event: str) -> list[dict[str, Any]]:
    return [fields for _level, name, fields in log_of(state).records if name == event]


def test_a_process_growing_in_its_cgroup_shows_its_rate_and_the_time_to_the_limit(
    spawn_workload,
) -> None:
    layout = find_cgroup_mounts()
    if isinstance(layout, Unreadable):
        pytest.skip(f"no cgroup mounts: {layout.detail}")
    with contextlib.ExitStack() as stack:
        try:
            live = stack.enter_context(live_memory_cgroup(512 << 20))
        except LabUnavailable as exc:
            pytest.skip(str(exc))
        workload = spawn_workload(
            "--touch-mb",
            "16",
            "--grow-mb-per-s",
            "40",
            "--grow-to-mb",
            "400",
            cgroup=live.directory,
        )
        # Reaped before the cgroup is removed: rmdir waits for even a zombie to go.
        stack.callback(workload.stop)
        services = Services(
            mem_total=MemTotal(), cgroups=layout, kernel_log=KernelLog(), pressure=None
        )
        state = make_state(
            workload.pid,
            threshold=5,
            threshold_base="cgroup",
            interval=0.25,
            min_interval=0.25,
            full_snapshot_min_interval=0.5,
            services=services,
        )
        watcher = ProcessWatcher(state, identity_of(workload.pid))
        assert watcher.attach() == []
        asyncio.run(ticks(watcher, 4.0))
    samples = records_of(state, "sample")
    assert samples, log_of(state).events()
    for sample in samples:
        envelope = {"timestamp": "2026-01-01T00:00:00.000Z", "schema_version": 1}
        validate_record({"event": "sample", "level": "warning", **envelope, **sample})
    growth = samples[-1]["growth"]
    assert growth["limit_kb"] == 512 * 1024
    # 40 MiB/s is 40960 kB/s; the allocator, the interpreter and the tick's timing
    # blur it, so the check is a wide band around it.
    assert 10_000 < growth["last_interval_kb_per_s"] < 120_000
    assert 10_000 < growth["last_minute_kb_per_s"] < 120_000
    assert 0 < growth["seconds_to_limit"] < 60
    full = records_of(state, "threshold_crossed") + records_of(state, "snapshot")
    assert len(full) >= 2, log_of(state).events()
    later = full[-1]["mappings_summary"]
    assert "changes_since" in later and later["total"]["rss_kb_change"] > 8 * 1024
    anon = [g for g in later["groups"] if g["kind"] == "anonymous"]
    assert max(g["rss_kb_change"] for g in anon) > 8 * 1024
    assert "changes_since" not in full[0]["mappings_summary"]


def test_a_process_holding_still_shows_no_growth(spawn_workload) -> None:
    size_mb = one_and_a_half_percent_of_ram_mb()
    workload = spawn_workload("--touch-mb", str(size_mb))
    state = make_state(workload.pid, threshold=1)
    watcher = ProcessWatcher(state, identity_of(workload.pid))
    asyncio.run(ticks(watcher, 1.0))
    samples = records_of(state, "sample")
    assert samples, log_of(state).events()
    growth = samples[-1]["growth"]
    total_kb = MemTotal().kb()
    assert growth["limit_kb"] == total_kb
    assert abs(growth["last_minute_kb_per_s"]) < 1024
    assert growth["seconds_to_limit"] is None or growth["seconds_to_limit"] > 3600
    crossed = records_of(state, "threshold_crossed")[0]
    assert crossed["growth"]["limit_kb"] == total_kb


def test_a_base_first_measured_late_starts_its_own_ring() -> None:
    ring = GrowthRing()
    for second in range(3):
        ring.add("system", float(second), 1000 * second)
    assert ring.growth("cgroup", LIMIT_KB).last_interval_kb_per_s is None
    ring.add("cgroup", 3.0, 500)
    ring.add("cgroup", 4.0, 800)
    assert ring.growth("cgroup", LIMIT_KB).last_interval_kb_per_s == 300
    assert ring.growth("system", LIMIT_KB).last_interval_kb_per_s == 1000
