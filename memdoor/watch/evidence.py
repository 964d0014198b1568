"""The evidence a watcher keeps: when to snapshot, the kept and the last full snapshot.

The newest complete snapshot is kept whatever the threshold, because when the
OOM killer strikes it is the evidence. Snapshots run in a worker thread (smaps
of a large process takes tens of milliseconds and can block on the target's
mmap lock) and never more often than their own cost allows.

Far below its threshold a process is snapshotted only now and then, and its
kept snapshot is read only if it dies: it is kept pickled and compressed (a
sleeping process's 13 KiB of objects, mostly mappings, become under 1 KiB;
a thousand targets keep a thousand), packed in the worker thread that took it
and unpacked only for the record that needs it. Near or above the threshold,
where records read it every interval, it is kept as it is.
"""

from __future__ import annotations

import asyncio
import pickle
import time
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union, cast

from memdoor.collect.cgroup import CgroupMounts
from memdoor.collect.identity import ProcessIdentity
from memdoor.config import ResolvedTarget
from memdoor.oom.witness import KillWitness
from memdoor.procfs.mapping_table import mapping_paths
from memdoor.procfs.maps import Mapping, path_group
from memdoor.procfs.net import Socket
from memdoor.snapshot import Snapshot, take_snapshot
from memdoor.vocabulary import Section
from memdoor.watch.context import Services

# A snapshot may take at most this share of the watcher's time: a process
# whose snapshot costs 100 ms is snapshotted at most every 500 ms.
SNAPSHOT_DUTY = 0.2
# Below the threshold the kept snapshot is refreshed when the size moved this
# much, when the process is this close to its threshold, or when it is this old.
KEEP_ON_GROWTH = 0.10
KEEP_NEAR_RATIO = 0.8
KEEP_MAX_AGE = 300.0


# zlib looks back at most this far: the most of a dictionary it can use.
_ZDICT_BYTES = 32 * 1024
# The first snapshot packed, pickled: the dictionary every later one is compressed
# against (see PackedSnapshot). Set once; a race of two worker threads at most
# makes two, each kept by the snapshots packed against it.
_shared_zdict: Optional[bytes] = None


class PackedSnapshot:
    """A snapshot pickled and compressed; unpack() gives an equal one back.

    pickle is exact for the snapshot's dataclasses and tuples, and only ever
    reads back what this process wrote. Each pickle repeats the same class and
    field names, library paths and cgroup files as every other: compressed
    against a dictionary, the first snapshot packed, a sleeping process's 2.2 KiB
    become about 0.6 when the first was another sleeping one. Whatever that first
    snapshot held, the dictionary only makes the others smaller or not; each
    packed snapshot keeps a reference to the one it was compressed against.
    """

    __slots__ = ("_data", "_zdict", "taken_at")

    def __init__(self, snapshot: Snapshot) -> None:
        global _shared_zdict
        self.taken_at = snapshot.taken_at
        pickled = pickle.dumps(snapshot, pickle.HIGHEST_PROTOCOL)
        if _shared_zdict is None:
            _shared_zdict = pickled[-_ZDICT_BYTES:]
        self._zdict = _shared_zdict
        compressor = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zdict=self._zdict)
        self._data = compressor.compress(pickled) + compressor.flush()

    def unpack(self) -> Snapshot:
        decompressor = zlib.decompressobj(zdict=self._zdict)
        pickled = decompressor.decompress(self._data) + decompressor.flush()
        return cast(Snapshot, pickle.loads(pickled))


def _take_snapshot(
    pack: bool,
    pid: int,
    sections: Collection[Section],
    start_ticks: Optional[int],
    proc: str,
    cgroups: Optional[CgroupMounts],
    mapping_rows: bool,
) -> tuple[Snapshot, Optional[PackedSnapshot]]:
    """take_snapshot, and the snapshot packed when asked (in the worker thread)."""
    snapshot = take_snapshot(pid, sections, start_ticks, proc, cgroups, mapping_rows)
    return snapshot, PackedSnapshot(snapshot) if pack and snapshot.identity else None


@dataclass(frozen=True)
class Taken:
    snapshot: Snapshot
    # It may overlap the process's exit: emitted, but not kept as the evidence.
    torn: bool


@dataclass(frozen=True)
class TooSoon:
    """The last snapshot was too recent for what it cost."""


@dataclass(frozen=True)
class PidReused:
    detail: str


@dataclass(frozen=True)
class Unidentified:
    """The process could not be identified (gone before the first read)."""


SnapshotOutcome = Union[Taken, TooSoon, PidReused, Unidentified]


def mapping_signature(mappings: Optional[Sequence[Mapping]]) -> frozenset[tuple[str, str]]:
    """What a material change of the address space means: a file or kind appeared or went.

    Anonymous regions come and go with every malloc arena; their growth shows in
    RSS, which has its own trigger.
    """
    return frozenset(map(path_group, set(mapping_paths(mappings or ()))))


def connection_signature(connections: Optional[Sequence[Socket]]) -> frozenset[tuple[Any, ...]]:
    return frozenset(
        (s.protocol, s.family, s.local, s.remote if s.state != "LISTEN" else "")
        for s in connections or ()
    )


class EvidenceKeeper:
    __slots__ = (
        "_kept_kb",
        "_next_at",
        "cgroups",
        "kept",
        "last_full",
        "pid",
        "proc",
        "slots",
        "start_ticks",
        "target",
        "witness",
    )

    def __init__(
        self,
        target: ResolvedTarget,
        identity: ProcessIdentity,
        witness: KillWitness,
        services: Services,
    ) -> None:
        self.target = target
        self.pid = identity.pid
        self.start_ticks = identity.start_ticks
        self.witness = witness
        self.cgroups = services.cgroups
        self.proc = services.proc
        self.slots = services.snapshot_slots
        # The newest complete snapshot, packed when it was taken far below the threshold.
        self.kept: Union[Snapshot, PackedSnapshot, None] = None
        self.last_full: Optional[Snapshot] = None
        self._next_at = 0.0
        # The size measured when the kept snapshot was taken, to tell when it went stale.
        self._kept_kb = 0

    @property
    def last(self) -> Optional[Snapshot]:
        """The newest complete snapshot (unpacked: for a record, not for every tick)."""
        kept = self.kept
        return kept.unpack() if isinstance(kept, PackedSnapshot) else kept

    async def take(
        self, measured_kb: int, force: bool = False, pack: bool = False
    ) -> SnapshotOutcome:
        """A snapshot, kept unless it may be torn by the exit; measured_kb is the
        tick's size, remembered with the kept snapshot; pack: keep it packed."""
        if not force and time.monotonic() < self._next_at:
            return TooSoon()
        if pack:  # far below the threshold: routine, it waits for a slot
            async with self.slots.routine():
                snapshot, packed = await self._in_worker(pack)
        else:
            snapshot, packed = await self._in_worker(pack)
        if snapshot.identity is None:
            reused = [p for p in snapshot.problems if p.reason == "reused"]
            return PidReused(reused[-1].detail) if reused else Unidentified()
        torn = self.witness.may_overlap_kill(snapshot.gone)
        if self.kept is None or not torn:
            self.kept = snapshot if packed is None else packed
            self._kept_kb = measured_kb
        return Taken(snapshot, torn)

    async def _in_worker(self, pack: bool) -> tuple[Snapshot, Optional[PackedSnapshot]]:
        """The snapshot, taken in a worker thread; its cost spaces out the next one."""
        started = time.monotonic()
        taken = await asyncio.to_thread(
            _take_snapshot,
            pack,
            self.pid,
            self.target.sections,
            self.start_ticks,
            self.proc,
            self.cgroups,
            self.target.detail == "full",
        )
        self._next_at = time.monotonic() + (time.monotonic() - started) / SNAPSHOT_DUTY
        return taken

    def stale(self, ratio: float, measured_kb: int) -> bool:
        """Below the threshold: whether the kept snapshot no longer describes the process."""
        kept = self.kept
        return (
            kept is None
            or ratio >= KEEP_NEAR_RATIO
            or abs(measured_kb - self._kept_kb) > self._kept_kb * KEEP_ON_GROWTH
            or time.time() - kept.taken_at > KEEP_MAX_AGE
        )

    def full_due(self, snapshot: Snapshot) -> bool:
        """A full snapshot when the process changed materially, at most at the configured rate."""
        target, last = self.target, self.last_full
        if last is None:
            return True
        if snapshot.taken_at - last.taken_at < target.full_snapshot_min_interval:
            return False
        old_rss = last.memory.rss_kb if last.memory else None
        new_rss = snapshot.memory.rss_kb if snapshot.memory else None
        grew = bool(
            target.full_snapshot_growth
            and old_rss
            and new_rss
            and (new_rss - old_rss) * 100 >= old_rss * target.full_snapshot_growth
        )
        return grew or (
            target.full_snapshot_on_change
            and (
                mapping_signature(last.mappings) != mapping_signature(snapshot.mappings)
                or connection_signature(last.connections)
                != connection_signature(snapshot.connections)
            )
        )
