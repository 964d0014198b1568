"""Neighbours' OOM kills from a cgroup's counter alone, when the kernel log is unreadable.

The counter is a v2 memory.events.local written by the test (the kernel's
format), the watched processes real ones; a real cgroup v1 kill follows.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from memdoor.collect.cgroup import MemoryCgroup, find_cgroup_mounts, memory_cgroup_of
from memdoor.collect.identity import read_stat
from memdoor.collect.reading import Unreadable
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.workload import MIB
from memdoor.oom.nearby import NearbyKills, NeighbourKillCounter, WatchedCgroup, WatchedProcess


def set_oom_kills(directory: Path, count: int) -> None:
    (directory / "memory.events.local").write_text(
        f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {count}\noom_group_kill 0\n"
    )


def events_file(cgroup: MemoryCgroup) -> str:
    return os.path.join(cgroup.directory, "memory.events.local")


@pytest.fixture
def cgroup(tmp_path: Path) -> MemoryCgroup:
    directory = tmp_path / "app.service"
    directory.mkdir()
    set_oom_kills(directory, 0)
    return MemoryCgroup(2, str(directory), str(tmp_path), "/app.service")


@pytest.fixture
def sleeper() -> Iterator[WatchedProcess]:
    child = subprocess.Popen(["sleep", "3600"])
    try:
        stat = read_stat(child.pid)
        assert not isinstance(stat, Unreadable)
        yield WatchedProcess(child.pid, stat.start_ticks)
    finally:
        child.kill()
        child.wait()


def test_a_rise_while_every_watched_process_lives_is_a_neighbours_kill(
    cgroup: MemoryCgroup, sleeper: WatchedProcess
) -> None:
    counter = NeighbourKillCounter()
    group = WatchedCgroup(cgroup, [sleeper])
    assert counter.check([group]) == []  # the baseline
    assert counter.check([group]) == []
    set_oom_kills(Path(cgroup.directory), 2)
    assert counter.check([group]) == [NearbyKills(cgroup, 0, 2, 2, events_file(cgroup))]
    assert counter.check([group]) == []


def test_a_kill_between_tracking_and_the_first_check_counts(
    cgroup: MemoryCgroup, sleeper: WatchedProcess
) -> None:
    """A watcher tracks its cgroup's count when it adopts the process; checks come later."""
    counter = NeighbourKillCounter()
    counter.track(cgroup.directory, 0)
    set_oom_kills(Path(cgroup.directory), 1)
    assert counter.check([WatchedCgroup(cgroup, [sleeper])]) == [
        NearbyKills(cgroup, 0, 1, 1, events_file(cgroup))
    ]


def test_a_rise_waits_while_a_watched_process_is_dying_and_its_claim_explains_it(
    cgroup: MemoryCgroup, sleeper: WatchedProcess
) -> None:
    counter = NeighbourKillCounter()
    victim = subprocess.Popen(["sleep", "3600"])
    stat = read_stat(victim.pid)
    assert not isinstance(stat, Unreadable)
    watched = [sleeper, WatchedProcess(victim.pid, stat.start_ticks)]
    assert counter.check([WatchedCgroup(cgroup, watched)]) == []
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    set_oom_kills(Path(cgroup.directory), 1)
    # Its watcher has not told yet: the rise may be its own.
    assert counter.check([WatchedCgroup(cgroup, watched)]) == []
    # It reported oom_killed with the counter's rise and left the watched set.
    counter.claim(cgroup.directory, 1)
    assert counter.check([WatchedCgroup(cgroup, [sleeper])]) == []


def test_claims_are_subtracted_and_the_rest_reported(
    cgroup: MemoryCgroup, sleeper: WatchedProcess
) -> None:
    counter = NeighbourKillCounter()
    group = WatchedCgroup(cgroup, [sleeper])
    counter.check([group])
    counter.claim(cgroup.directory, 1)
    set_oom_kills(Path(cgroup.directory), 3)
    assert counter.check([group]) == [NearbyKills(cgroup, 0, 3, 2, events_file(cgroup))]


def test_a_lower_counter_is_a_new_cgroup_and_a_new_baseline(
    cgroup: MemoryCgroup, sleeper: WatchedProcess
) -> None:
    counter = NeighbourKillCounter()
    set_oom_kills(Path(cgroup.directory), 5)
    group = WatchedCgroup(cgroup, [sleeper])
    counter.check([group])
    set_oom_kills(Path(cgroup.directory), 1)
    assert counter.check([group]) == []
    set_oom_kills(Path(cgroup.directory), 2)
    assert counter.check([group]) == [NearbyKills(cgroup, 1, 2, 1, events_file(cgroup))]


def test_a_removed_cgroup_is_forgotten(cgroup: MemoryCgroup, sleeper: WatchedProcess) -> None:
    counter = NeighbourKillCounter()
    group = WatchedCgroup(cgroup, [sleeper])
    set_oom_kills(Path(cgroup.directory), 4)
    counter.check([group])
    os.remove(os.path.join(cgroup.directory, "memory.events.local"))
    assert counter.check([group]) == []
    # Recreated with the same name and a count that happens to be higher: a baseline.
    set_oom_kills(Path(cgroup.directory), 6)
    assert counter.check([group]) == []


def test_a_real_kill_of_an_unwatched_neighbour() -> None:
    """A cgroup the test creates: a small watched process and a hog the kernel kills."""
    layout = find_cgroup_mounts()
    assert not isinstance(layout, Unreadable)
    with live_memory_cgroup(128 * MIB) as live:
        watched = live.spawn("--touch-mb", "8")
        cgroup = memory_cgroup_of(watched.pid, layout)
        assert not isinstance(cgroup, Unreadable)
        assert cgroup.directory == live.directory
        stat = read_stat(watched.pid)
        assert not isinstance(stat, Unreadable)
        group = WatchedCgroup(cgroup, [WatchedProcess(watched.pid, stat.start_ticks)])
        counter = NeighbourKillCounter()
        assert counter.check([group]) == []
        hog = live.spawn("--touch-mb", "8", "--grow-mb-per-s", "500", "--grow-to-mb", "4096")
        assert hog.proc.wait(30) == -signal.SIGKILL
        (found,) = counter.check([group])
        assert (found.cgroup, found.kills, found.after - found.before) == (cgroup, 1, 1)
