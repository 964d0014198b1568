"""A process's memory cgroup: where it is, what it uses, what limits it, and its OOM kills.

A process can be measured against its cgroup's limit instead of MemTotal, and
the cgroup's OOM counters are the kernel's own record that the OOM killer acted
there. cgroup v1 and v2 name the same figures differently and hosts mount them
in different places (pure v1, hybrid, pure v2, containers with a cgroup
namespace or a bind-mounted subtree), so the mounts are discovered from
mountinfo and every path is built under a filesystem root the caller may move,
which is how the fixture trees in tests/fixtures/cgroup stand in for real hosts.
"""

from __future__ import annotations

import functools
import os
import posixpath
from dataclasses import dataclass
from typing import NamedTuple, Optional, TypeVar, Union

from memdoor.collect.reading import Unreadable, malformed, read_parsed, read_text
from memdoor.process_text import from_os, to_os
from memdoor.procfs.cgroup import (
    CgroupMount,
    CgroupVersion,
    parse_flat_keyed,
    parse_int_file,
    parse_limit,
    parse_mountinfo_cgroups,
    parse_proc_cgroup,
    relative_to_mount_root,
)
from memdoor.slotted import slotted
from memdoor.vocabulary import percent_of

T = TypeVar("T")
# Distinct cgroups whose value is shared by the processes found in them (_shared).
SHARED_CGROUPS = 256


@dataclass(frozen=True)
class _Files:
    """The files holding the same figure in each cgroup version."""

    usage: str
    limit: str
    high: Optional[str]
    counters: tuple[str, ...]


# v1 has no equivalent of memory.high (its soft limit only steers global reclaim).
# memory.events.local (5.2+) counts only this cgroup's own events, whereas
# memory.events also counts every descendant's; older kernels have only the latter.
_V2_FILES = _Files(
    "memory.current", "memory.max", "memory.high", ("memory.events.local", "memory.events")
)
_V1_FILES = _Files("memory.usage_in_bytes", "memory.limit_in_bytes", None, ("memory.oom_control",))


@dataclass(frozen=True)
class CgroupMounts:
    """Where this host mounts the cgroup hierarchies that can hold the memory controller.

    A controller is attached to exactly one hierarchy, so at most one of
    v2_memory and v1_memory applies; v2 wins when its root lists "memory".
    """

    fs_root: str
    v2: Optional[CgroupMount]
    v2_memory: bool
    v1_memory: Optional[CgroupMount]
    # Why the v2 root's controllers could not be read, when they could not.
    problems: tuple[Unreadable, ...] = ()

    def directory(self, mount: CgroupMount) -> str:
        return os.path.join(self.fs_root, mount.mount_point.lstrip("/"))


@slotted
@dataclass(frozen=True)
class MemoryCgroup:
    """The cgroup directory a process's memory is charged to.

    top is the mount's directory: the highest cgroup visible from here, where
    walks towards the root stop. path is the process's cgroup as /proc/PID/cgroup
    names it. A cgroup's name is any bytes its creator chose: path is text in
    memdoor.process_text's form, for records; directory and top are what the
    os functions take (surrogateescape), for reading files and nothing else.
    """

    version: CgroupVersion
    directory: str
    top: str
    path: str

    def path_of(self, directory: str) -> str:
        """Another cgroup directory of this hierarchy named as the kernel log and
        /proc/PID/cgroup name it ("/a/b"), such as the ancestor whose limit applies.

        The directory is below the mount point; the name is below the hierarchy's
        root, which differs when a container bind-mounts a subtree: the mount's own
        name is this cgroup's path minus its part below the mount point.
        """
        own_relative = os.path.relpath(self.directory, self.top)
        path = to_os(self.path)
        mount_name = path
        if own_relative != "." and path.endswith("/" + own_relative):
            mount_name = path[: -len(own_relative) - 1] or "/"
        elif own_relative != ".":
            mount_name = "/"
        relative = os.path.relpath(directory, self.top)
        return from_os(mount_name if relative == "." else posixpath.join(mount_name, relative))


@dataclass(frozen=True)
class CgroupFigures:
    """Usage and limits of one memory cgroup, in bytes.

    limit_bytes is the tightest limit on the way to the top, because a parent's
    limit caps all its descendants whatever their own limits say; the kernel
    OOM-kills when the cgroup holding that limit (limit_directory) reaches it,
    and its usage includes its other children. So usage_percent is
    limit_usage_bytes / limit_bytes, which is the process's own usage_bytes
    whenever the limit is on its own cgroup. usage_bytes is None only for the
    cgroup2 root, which has no memory.current. oom_counters is the whole counter
    file named by oom_counters_source: v2 memory.events(.local) with oom,
    oom_kill, max, high (and oom_group_kill on newer kernels), or v1
    memory.oom_control with oom_kill (4.13+) and under_oom; both are empty/None
    for the cgroup2 root, which has no such file. stat is the part of memory.stat
    that explains a cgroup's usage (its anon/file/kernel split, STAT_KEYS);
    None only where the kernel has none (the cgroup2 root on older kernels).
    """

    place: MemoryCgroup
    usage_bytes: Optional[int]
    limit_bytes: Optional[int]
    limit_directory: Optional[str]
    limit_usage_bytes: Optional[int]
    usage_percent: Optional[float]
    high_bytes: Optional[int]
    high_directory: Optional[str]
    oom_counters: dict[str, int]
    oom_counters_source: Optional[str]
    stat: Optional[dict[str, int]]

    @property
    def limit_path(self) -> Optional[str]:
        """Where the limit that applies is set, by its cgroup path."""
        return None if self.limit_directory is None else self.place.path_of(self.limit_directory)


def _prefer_whole_hierarchy(mounts: list[CgroupMount]) -> Optional[CgroupMount]:
    """A hierarchy can be mounted several times; a mount of its root sees every cgroup."""
    for mount in mounts:
        if mount.root == "/":
            return mount
    return mounts[0] if mounts else None


def find_cgroup_mounts(
    proc_root: str = "/proc", fs_root: str = "/"
) -> Union[CgroupMounts, Unreadable]:
    """Find the v2 mount and the v1 memory mount from /proc/self/mountinfo.

    Never assumes /sys/fs/cgroup: hybrid hosts put cgroup2 at
    /sys/fs/cgroup/unified, and containers mount what they like. Whether cgroup2
    holds the memory controller is only known from cgroup.controllers at its root.
    """
    mounts = read_parsed(f"{proc_root}/self/mountinfo", parse_mountinfo_cgroups)
    if isinstance(mounts, Unreadable):
        return mounts
    v2 = _prefer_whole_hierarchy([mount for mount in mounts if mount.version == 2])
    v1_memory = _prefer_whole_hierarchy(
        [mount for mount in mounts if mount.version == 1 and "memory" in mount.controllers]
    )
    layout = CgroupMounts(fs_root, v2, False, v1_memory)
    if v2 is None:
        return layout
    controllers = read_text(os.path.join(layout.directory(v2), "cgroup.controllers"))
    if isinstance(controllers, Unreadable):
        return CgroupMounts(fs_root, v2, False, v1_memory, (controllers,))
    return CgroupMounts(fs_root, v2, "memory" in controllers.split(), v1_memory)


def _charged_directory(directory: str, top: str) -> str:
    """The nearest cgroup at or above directory that has the memory controller.

    In cgroup v2 a cgroup whose parent has not enabled "memory" in
    cgroup.subtree_control has no memory.* files, and the kernel charges its
    processes to the nearest ancestor that has them.
    """
    while directory != top and not os.path.exists(os.path.join(directory, "memory.current")):
        directory = os.path.dirname(directory)
    return directory


def memory_cgroup_of(
    pid: int, layout: CgroupMounts, proc_root: str = "/proc"
) -> Union[MemoryCgroup, Unreadable]:
    """The directory of the memory cgroup pid belongs to, under this host's mounts.

    The path in /proc/PID/cgroup is relative to our cgroup namespace, and so is
    the mount's root in mountinfo; the directory is the part of the path below
    that root, under the mount point.
    """
    what = f"{proc_root}/{pid}/cgroup"
    entries = read_parsed(what, parse_proc_cgroup)
    if isinstance(entries, Unreadable):
        return entries
    version: CgroupVersion
    if layout.v2_memory and layout.v2 is not None:
        version, mount = 2, layout.v2
        matching = [entry for entry in entries if entry.is_v2]
    elif layout.v1_memory is not None:
        version, mount = 1, layout.v1_memory
        matching = [entry for entry in entries if "memory" in entry.controllers]
    else:
        return Unreadable(what, "error", "no memory cgroup controller is mounted on this host")
    if not matching:
        return malformed(what, f"no line for the cgroup v{version} memory hierarchy")
    path = matching[0].path
    relative = relative_to_mount_root(to_os(path), mount.root)
    if relative is None:
        return Unreadable(
            what, "error", f"cgroup {path} is not below {mount.root}, the root mounted here"
        )
    top = layout.directory(mount)
    directory = os.path.join(top, relative) if relative else top
    if not os.path.isdir(directory):
        return Unreadable(directory, "vanished", "cgroup directory does not exist")
    if version == 2:
        directory = _charged_directory(directory, top)
    return _shared(MemoryCgroup(version, directory, top, path))


@functools.lru_cache(maxsize=SHARED_CGROUPS)
def _shared(cgroup: MemoryCgroup) -> MemoryCgroup:
    """The first of equal cgroups found: the processes of one cgroup, a service's or a
    container's, keep one value and its text (a thousand watched in one: one)."""
    return cgroup


# What a cgroup's memory is made of. v2 names (anon, file, kernel, ...) and v1
# names (rss, cache, mapped_file, ...) differ; the rest of memory.stat (about
# 40 counters of reclaim activity) is left out of every snapshot kept in memory.
STAT_KEYS = frozenset(
    {
        "anon",
        "file",
        "kernel",
        "kernel_stack",
        "pagetables",
        "sock",
        "shmem",
        "file_mapped",
        "file_dirty",
        "file_writeback",
        "slab",
        "swapcached",
        "rss",
        "cache",
        "mapped_file",
        "swap",
        "dirty",
        "writeback",
        "total_rss",
        "total_cache",
        "total_shmem",
        "total_swap",
    }
)


def _parse_stat_subset(text: str) -> dict[str, int]:
    return {k: v for k, v in parse_flat_keyed(text).items() if k in STAT_KEYS}


def _files(cg: MemoryCgroup) -> _Files:
    return _V2_FILES if cg.version == 2 else _V1_FILES


def _ancestry(cg: MemoryCgroup) -> list[str]:
    """cg.directory, then each parent up to and including cg.top."""
    if os.path.commonpath([cg.directory, cg.top]) != cg.top:
        raise ValueError(f"{cg.directory} is not below {cg.top}")
    directories = [cg.directory]
    while directories[-1] != cg.top:
        directories.append(os.path.dirname(directories[-1]))
    return directories


def _parse_v1_use_hierarchy(text: str) -> bool:
    return parse_int_file(text) != 0


def _hierarchical_ancestry(cg: MemoryCgroup) -> Union[list[str], Unreadable]:
    """The cgroups whose limits apply to cg: itself and the ancestors that account for it.

    Before 5.11 a v1 parent with memory.use_hierarchy 0 does not charge its
    children's usage to itself, so neither its limit nor anything above it
    applies. Later kernels always account hierarchically, as v2 does.
    """
    directories = _ancestry(cg)
    if cg.version == 2:
        return directories
    for index, directory in enumerate(directories[1:], start=1):
        hierarchical = read_parsed(
            os.path.join(directory, "memory.use_hierarchy"), _parse_v1_use_hierarchy
        )
        if isinstance(hierarchical, Unreadable):
            if hierarchical.reason == "vanished":
                continue
            return hierarchical
        if not hierarchical:
            return directories[:index]
    return directories


def _tightest(
    directories: list[str], name: str, top: str
) -> Union[tuple[Optional[int], Optional[str]], Unreadable]:
    """The smallest limit in file name among directories, and where it is (nearest wins ties).

    The cgroup2 root has no memory.max or memory.high; a missing file there
    means no limit, anywhere else it means the cgroup is gone.
    """
    best: Optional[int] = None
    best_directory: Optional[str] = None
    for directory in directories:
        limit = read_parsed(os.path.join(directory, name), parse_limit)
        if isinstance(limit, Unreadable):
            if directory == top and limit.reason == "vanished":
                continue
            return limit
        if limit is not None and (best is None or limit < best):
            best, best_directory = limit, directory
    return best, best_directory


def _read_usage_at(cg: MemoryCgroup, directory: str) -> Union[Optional[int], Unreadable]:
    usage = read_parsed(os.path.join(directory, _files(cg).usage), parse_int_file)
    if isinstance(usage, Unreadable) and directory == cg.top and usage.reason == "vanished":
        return None
    return usage


def usage_file(cg: MemoryCgroup) -> str:
    """The file the per-tick poll for cgroup thresholds reads (memory.current or
    memory.usage_in_bytes), which memdoor.watch.measure keeps open.

    The cgroup2 root has no memory.current. To poll against a limit set on an
    ancestor, pass a MemoryCgroup whose directory is CgroupFigures.limit_directory.
    """
    return os.path.join(cg.directory, _files(cg).usage)


def read_usage_bytes(cg: MemoryCgroup) -> Union[int, Unreadable]:
    """The per-tick poll for cgroup thresholds: one small file, about 10 µs by its path."""
    return read_parsed(usage_file(cg), parse_int_file)


def _read_counters(cg: MemoryCgroup) -> Union[tuple[dict[str, int], str], Unreadable, None]:
    """The OOM counter file of cg itself, or None for the cgroup2 root, which has none."""
    missing = Unreadable(cg.directory, "vanished", "no OOM counter file")
    for name in _files(cg).counters:
        path = os.path.join(cg.directory, name)
        counters = read_parsed(path, parse_flat_keyed)
        if not isinstance(counters, Unreadable):
            # Named in records (cgroup_counter_file), never opened again.
            return counters, from_os(path)
        if counters.reason != "vanished":
            return counters
        missing = counters
    return None if cg.directory == cg.top else missing


class OomKillCount(NamedTuple):
    kills: int
    # The counter file it was read from: memory.events.local, memory.events or
    # memory.oom_control, whichever this kernel and cgroup have.
    file: str


def read_oom_kill_count(cg: MemoryCgroup) -> Union[OomKillCount, Unreadable]:
    """How many processes of this cgroup the OOM killer has killed.

    Read from the same file read_cgroup_memory reports. The count lives in the
    cgroup's own directory and disappears with it, so it must be read before the
    cgroup is removed; only v2 memory.events of the ancestors keeps counting a
    removed descendant's kills (v1 counts per cgroup: a parent stays 0).
    v1 memory.oom_control has counted kills only since 4.13.
    """
    counters = _read_counters(cg)
    if counters is None:
        return Unreadable(cg.directory, "error", "the cgroup2 root has no OOM counters")
    if isinstance(counters, Unreadable):
        return counters
    values, path = counters
    if "oom_kill" not in values:
        return malformed(path, "no oom_kill counter (kernels before 4.13 do not count kills)")
    return OomKillCount(values["oom_kill"], path)


def read_subtree_oom_kills(directory: str) -> Union[OomKillCount, Unreadable]:
    """A v2 cgroup's OOM kills counted with its descendants' (memory.events, not .local).

    A parent keeps counting after a child cgroup is removed, so this is how a
    kill in a cgroup that a service manager removed at once can still be told.
    """
    path = os.path.join(directory, "memory.events")
    values = read_parsed(path, parse_flat_keyed)
    if isinstance(values, Unreadable):
        return values
    if "oom_kill" not in values:
        return malformed(path, "no oom_kill counter")
    return OomKillCount(values["oom_kill"], path)


class CgroupLimit(NamedTuple):
    """What a watcher needs to follow between snapshots: the limit that applies, where
    it is set, and the cgroup's OOM kill count (None where it has none)."""

    limit_bytes: Optional[int]
    limit_directory: Optional[str]
    oom_kills: Optional[int]


def read_cgroup_limit(cg: MemoryCgroup) -> Union[CgroupLimit, Unreadable]:
    """The limit and kill count read_cgroup_memory would report, without the rest
    (usage, memory.high, memory.stat): a watcher looks them up again now and then."""
    directories = _hierarchical_ancestry(cg)
    if isinstance(directories, Unreadable):
        return directories
    limit = _tightest(directories, _files(cg).limit, cg.top)
    if isinstance(limit, Unreadable):
        return limit
    counters = _read_counters(cg)
    if isinstance(counters, Unreadable):
        return counters
    return CgroupLimit(*limit, None if counters is None else counters[0].get("oom_kill"))


def read_cgroup_memory(cg: MemoryCgroup) -> Union[CgroupFigures, Unreadable]:
    """Everything a snapshot reports about the cgroup; costs a few small reads per ancestor."""
    files = _files(cg)
    usage = _read_usage_at(cg, cg.directory)
    if isinstance(usage, Unreadable):
        return usage
    directories = _hierarchical_ancestry(cg)
    if isinstance(directories, Unreadable):
        return directories
    limit = _tightest(directories, files.limit, cg.top)
    if isinstance(limit, Unreadable):
        return limit
    limit_bytes, limit_directory = limit
    high_bytes: Optional[int] = None
    high_directory: Optional[str] = None
    if files.high is not None:
        high = _tightest(directories, files.high, cg.top)
        if isinstance(high, Unreadable):
            return high
        high_bytes, high_directory = high
    limit_usage = usage
    if limit_directory is not None and limit_directory != cg.directory:
        ancestor_usage = _read_usage_at(cg, limit_directory)
        if isinstance(ancestor_usage, Unreadable):
            return ancestor_usage
        limit_usage = ancestor_usage
    counters = _read_counters(cg)
    if isinstance(counters, Unreadable):
        return counters
    stat = read_parsed(os.path.join(cg.directory, "memory.stat"), _parse_stat_subset)
    if isinstance(stat, Unreadable) and not (cg.directory == cg.top and stat.reason == "vanished"):
        return stat
    percent = None
    if limit_bytes is not None and limit_usage is not None:
        percent = percent_of(limit_usage, limit_bytes)
    return CgroupFigures(
        place=cg,
        usage_bytes=usage,
        limit_bytes=limit_bytes,
        limit_directory=limit_directory,
        limit_usage_bytes=limit_usage,
        usage_percent=percent,
        high_bytes=high_bytes,
        high_directory=high_directory,
        oom_counters=counters[0] if counters else {},
        oom_counters_source=counters[1] if counters else None,
        stat=None if isinstance(stat, Unreadable) else stat,
    )
