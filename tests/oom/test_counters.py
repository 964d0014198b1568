"""A watched process's cgroup OOM counters, read so a removed cgroup still tells the kill.

The cgroups are directories the test writes in the kernel's format (a v2 unit
under a slice), so each way the counter is read can be forced: the cgroup still
there, removed after its counter file signalled, removed with no signal (only
the parent's hierarchical count is left); a real v1 kill follows.
"""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest

from memdoor.collect.cgroup import MemoryCgroup, find_cgroup_mounts, memory_cgroup_of
from memdoor.collect.reading import Unreadable
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.workload import MIB
from memdoor.oom.counters import (
    PARENT_REBASE_SECONDS,
    CgroupKillCounters,
    CounterRise,
    ParentKillCounts,
)


def write_events(directory: Path, name: str, kills: int) -> None:
    (directory / name).write_text(f"low 0\nhigh 0\nmax 9\noom 3\noom_kill {kills}\n")


@pytest.fixture
def unit(tmp_path: Path) -> MemoryCgroup:
    """system.slice/app.service, with a parent that has counted two kills before."""
    slice_dir = tmp_path / "system.slice"
    service = slice_dir / "app.service"
    service.mkdir(parents=True)
    write_events(slice_dir, "memory.events", 2)
    write_events(service, "memory.events.local", 0)
    return MemoryCgroup(2, str(service), str(tmp_path), "/system.slice/app.service")


def test_the_own_counter_while_the_cgroup_is_there(unit: MemoryCgroup) -> None:
    counters = CgroupKillCounters(unit)
    counters.alive(0)
    write_events(Path(unit.directory), "memory.events.local", 1)
    own = str(Path(unit.directory) / "memory.events.local")
    assert counters.at_exit() == CounterRise(0, 1, own)


def test_a_signalled_reading_outlives_the_cgroup(unit: MemoryCgroup) -> None:
    counters = CgroupKillCounters(unit)
    counters.alive(0)
    write_events(Path(unit.directory), "memory.events.local", 1)
    assert counters.changed() is True
    assert counters.changed() is False  # read again, unchanged
    shutil.rmtree(unit.directory)
    own = str(Path(unit.directory) / "memory.events.local")
    assert counters.at_exit() == CounterRise(0, 1, own)


def test_without_a_signal_the_parents_hierarchical_count_tells(unit: MemoryCgroup) -> None:
    counters = CgroupKillCounters(unit)
    counters.alive(0)
    parent = Path(unit.directory).parent
    shutil.rmtree(unit.directory)
    write_events(parent, "memory.events", 3)
    assert counters.at_exit() == CounterRise(2, 3, str(parent / "memory.events"))


def test_a_removed_cgroup_whose_parent_did_not_count_tells_nothing(unit: MemoryCgroup) -> None:
    counters = CgroupKillCounters(unit)
    counters.alive(0)
    shutil.rmtree(unit.directory)
    assert counters.at_exit() == CounterRise(0, None, None)


def test_a_kill_counted_while_the_process_lived_is_not_its_own(unit: MemoryCgroup) -> None:
    """A neighbour's kill signalled, then the process seen alive: the baseline moves."""
    counters = CgroupKillCounters(unit)
    counters.alive(0)
    write_events(Path(unit.directory), "memory.events.local", 1)
    assert counters.changed() is True
    counters.alive(0)
    shutil.rmtree(unit.directory)
    rise = counters.at_exit()
    assert rise.before == 1 and (rise.after is None or rise.after <= 1), rise


def test_processes_under_one_parent_share_its_reading_while_it_is_recent(
    unit: MemoryCgroup, tmp_path: Path
) -> None:
    parent = Path(unit.directory).parent
    sibling_dir = parent / "other.service"
    sibling_dir.mkdir()
    sibling = MemoryCgroup(2, str(sibling_dir), str(tmp_path), "/system.slice/other.service")
    parents = ParentKillCounts()
    first = parents.baseline(str(parent), 100.0)
    assert first is not None and first.kills == 2
    write_events(parent, "memory.events", 3)
    # Read again only once the reading is PARENT_REBASE_SECONDS old.
    assert parents.baseline(str(parent), 100.0 + PARENT_REBASE_SECONDS / 2) is first
    later = parents.baseline(str(parent), 100.0 + PARENT_REBASE_SECONDS)
    assert later is not None and later.kills == 3
    # Both processes' baselines come from the shared reading; each exit reads anew.
    counters = [CgroupKillCounters(unit, parents), CgroupKillCounters(sibling, parents)]
    for one in counters:
        one.alive(0)
    shutil.rmtree(unit.directory)
    shutil.rmtree(sibling_dir)
    write_events(parent, "memory.events", 4)
    events = str(parent / "memory.events")
    assert [one.at_exit() for one in counters] == [CounterRise(3, 4, events)] * 2


def test_v1_has_no_hierarchical_parent(tmp_path: Path) -> None:
    child = tmp_path / "app"
    child.mkdir()
    (child / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    counters = CgroupKillCounters(MemoryCgroup(1, str(child), str(tmp_path), "/app"))
    counters.alive(0)
    shutil.rmtree(child)
    assert counters.at_exit() == CounterRise(0, None, None)


def test_a_real_kill_is_counted_before_the_cgroup_goes() -> None:
    layout = find_cgroup_mounts()
    assert not isinstance(layout, Unreadable)
    with live_memory_cgroup(64 * MIB) as live:
        hog = live.spawn("--touch-mb", "8", "--grow-mb-per-s", "300", "--grow-to-mb", "1024")
        place = memory_cgroup_of(hog.pid, layout)
        assert not isinstance(place, Unreadable)
        counters = CgroupKillCounters(place)
        counters.alive(0)
        assert hog.proc.wait(30) == -signal.SIGKILL
        assert counters.changed() is True
    rise = counters.at_exit()  # the cgroup is gone now
    assert (rise.before, rise.after) == (0, 1), rise
