"""Cgroup limit lookups shared by the trackers of processes in one cgroup, on a real cgroup."""

from __future__ import annotations

from memdoor.collect.cgroup import CgroupLimit, MemoryCgroup, read_cgroup_limit
from memdoor.lab.memory_cgroup import LiveCgroup, live_memory_cgroup
from memdoor.lab.workload import MIB
from memdoor.watch.measure import LIMIT_SHARED_FOR, LimitLookups, LimitTracker


def place_of(cgroup: LiveCgroup) -> MemoryCgroup:
    own, directory = cgroup.own, cgroup.directory
    return MemoryCgroup(own.version, directory, own.top, own.path_of(directory) or "/")


def test_a_lookup_under_a_second_old_answers_and_an_older_one_is_read_again() -> None:
    with live_memory_cgroup(256 * MIB) as cgroup:
        place, lookups = place_of(cgroup), LimitLookups()
        first = lookups.read(place, 100.0)
        assert first == read_cgroup_limit(place)
        assert isinstance(first, CgroupLimit) and first.limit_bytes == 256 * MIB
        cgroup.set_limit(128 * MIB)
        assert lookups.read(place, 100.0 + LIMIT_SHARED_FOR / 2) is first
        later = lookups.read(place, 100.0 + LIMIT_SHARED_FOR)
        assert isinstance(later, CgroupLimit) and later.limit_bytes == 128 * MIB


def test_trackers_sharing_lookups_follow_the_limit_as_one_reading_alone() -> None:
    with live_memory_cgroup(256 * MIB) as cgroup:
        place, lookups = place_of(cgroup), LimitLookups()
        shared = [LimitTracker(place, lookups) for _ in range(3)]
        alone = LimitTracker(place)
        for tracker in [*shared, alone]:
            assert tracker.refresh() is None
        assert {(t.limit_bytes, t.applied_limit, t.oom_kills) for t in shared} == {
            (alone.limit_bytes, alone.applied_limit, alone.oom_kills)
        }
        assert alone.limit_bytes == 256 * MIB
