"""One asyncio task per watched process.

A tick costs two or three tiny reads (stat for identity, statm or the cgroup's
usage for the threshold), so hundreds of processes can be watched at a
one-second interval. Polling adapts: the closer a process is to its threshold,
the shorter the wait, and a memory pressure notification cuts the wait short.

The watcher keeps the newest snapshot of its process in memory whatever the
threshold, because when the OOM killer strikes that snapshot is the evidence.
Snapshots are taken in a worker thread (smaps of a large process takes tens of
milliseconds and can block on the target's mmap lock) and never more often
than their own cost allows.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from memdoor.collect.cgroup import (
    CgroupLayout,
    CgroupMemory,
    MemoryCgroup,
    memory_cgroup_of,
    read_cgroup_memory,
    read_oom_kill_count,
    read_usage_bytes,
)
from memdoor.collect.identity import CLOCK_TICKS, ProcessIdentity
from memdoor.collect.liveness import Liveness, Verdict, check_process
from memdoor.collect.memory import read_rss_kb
from memdoor.collect.reading import Unreadable
from memdoor.config import ResolvedTarget
from memdoor.messages import cgroup_usage_line, human_kb, usage_line
from memdoor.nearby import NeighbourKillCounter
from memdoor.oom_evidence import KernelLog, boottime_offset_usec, kill_dict, wall_time_of
from memdoor.pressure import PressureHub
from memdoor.procfs.kmsg import OomKillReport
from memdoor.render.bounded import (
    ENVELOPE_ALLOWANCE,
    RECORD_BUDGET,
    process_fields,
    snapshot_fields,
)
from memdoor.render.snapshot_dict import cgroup_dict, cgroup_path, memory_dict
from memdoor.render.summary import connection_signature, mapping_signature
from memdoor.snapshot import Snapshot, take_snapshot
from memdoor.system_memory import MemTotal
from memdoor.vocabulary import percent_of

GONE_REASONS = {
    Verdict.EXITED: "exited",
    Verdict.EXE_MISMATCH: "exe_mismatch",
    Verdict.REUSED: "pid_reused",
}
# A snapshot may take at most this share of the watcher's time: a process
# whose snapshot costs 100 ms is snapshotted at most every 500 ms.
SNAPSHOT_DUTY = 0.2
# Below the threshold the kept snapshot is refreshed when RSS moved this much,
# when the process is this close to its threshold, or when it is this old.
KEEP_ON_GROWTH = 0.10
KEEP_NEAR_RATIO = 0.8
KEEP_MAX_AGE = 300.0
# An oom_killed record carries the kill (about 700 bytes) and the process
# (a command line of up to 2 KB) besides the last snapshot.
OOM_KILLED_SNAPSHOT_BUDGET = RECORD_BUDGET - ENVELOPE_ALLOWANCE - 4096
# How often a cgroup's limit is looked up again (limits change with systemctl
# set-property or a container update); each full snapshot also refreshes it.
CGROUP_REFRESH = 30.0


@dataclass
class Services:
    """What every watcher of the daemon shares."""

    mem_total: MemTotal
    cgroups: Optional[CgroupLayout]
    kernel_log: KernelLog
    pressure: Optional[PressureHub]
    proc: str = "/proc"
    # Told of each watched process's counted OOM kill, so it is not a neighbour's.
    neighbour_kills: NeighbourKillCounter = field(default_factory=NeighbourKillCounter)


@dataclass
class TargetState:
    """What the watchers of one target share: its config, its budget, its counters."""

    target: ResolvedTarget
    log: Any
    services: Services
    redact_cmdline: bool
    snapshots_emitted: int = 0
    above: set[int] = field(default_factory=set)

    @property
    def count_reached(self) -> bool:
        return self.target.count is not None and self.snapshots_emitted >= self.target.count


@dataclass
class Measure:
    """One tick's figure against the target's threshold base."""

    percent: float
    message: str


class CgroupWatch:
    """The process's memory cgroup, the cgroup whose limit applies, and its OOM counter."""

    def __init__(self, cgroup: MemoryCgroup) -> None:
        self.cgroup = cgroup
        self.limit: Optional[MemoryCgroup] = None
        self.limit_bytes: Optional[int] = None
        self.oom_kills: Optional[int] = None
        self.refreshed = 0.0

    def refresh(self) -> Optional[Unreadable]:
        figures = read_cgroup_memory(self.cgroup)
        if isinstance(figures, Unreadable):
            self.refreshed = time.monotonic()
            return figures
        self.apply(figures)
        return None

    def apply(self, figures: CgroupMemory) -> None:
        """Take the limit and the OOM count from figures read by refresh or by a snapshot."""
        self.refreshed = time.monotonic()
        self.limit_bytes = figures.limit_bytes
        self.limit = (
            None
            if figures.limit_directory is None
            else MemoryCgroup(
                self.cgroup.version,
                figures.limit_directory,
                self.cgroup.top,
                cgroup_path(figures, figures.limit_directory) or "/",
            )
        )
        self.oom_kills = figures.oom_counters.get("oom_kill")

    def read_oom_kills(self) -> Optional[int]:
        count = read_oom_kill_count(self.cgroup)
        return None if isinstance(count, Unreadable) else count


class ProcessWatcher:
    def __init__(self, state: TargetState, identity: ProcessIdentity) -> None:
        self.state = state
        self.pid = identity.pid
        self.identity = identity
        self.last_snapshot: Optional[Snapshot] = None
        self.last_full: Optional[Snapshot] = None
        self.last_progress = time.monotonic()
        self.ended: Optional[str] = None
        self.cgroup: Optional[CgroupWatch] = None
        self.wakeups: list[str] = []
        self.wakeup_problems: list[Unreadable] = []
        self._waiter: Optional[asyncio.Future[None]] = None
        self._next_snapshot_at = 0.0
        self._next_emit_at = 0.0
        # The size measured by the last tick (RSS, or the cgroup's usage) and the
        # one when the kept snapshot was taken, to tell when it went stale.
        self._current_kb = 0
        self._kept_kb = 0
        self._fallback_reported = False
        self._kill: Optional[OomKillReport] = None
        # (directory, limit in bytes) of the limit the wake-ups are registered for.
        self._watched_limit: Optional[tuple[str, int]] = None
        # The kernel log's serial when this process was last seen alive and
        # not yet sent SIGKILL: no kill report up to it can be this process's.
        self._alive_after = 0

    @property
    def target(self) -> ResolvedTarget:
        return self.state.target

    @property
    def services(self) -> Services:
        return self.state.services

    def wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def attach(self) -> None:
        """Find the cgroup and register for pressure notifications; failures are noted."""
        services = self.services
        if services.cgroups is not None:
            cgroup = memory_cgroup_of(self.pid, services.cgroups, services.proc)
            if isinstance(cgroup, Unreadable):
                self.wakeup_problems.append(cgroup)
            else:
                self.cgroup = CgroupWatch(cgroup)
                problem = self.cgroup.refresh()
                if problem is not None:
                    self.wakeup_problems.append(problem)
                elif (
                    services.kernel_log.unavailable is not None
                    and self.cgroup.oom_kills is not None
                ):
                    # Neighbours' kills are counted only where the log cannot name them.
                    services.neighbour_kills.track(cgroup.directory, self.cgroup.oom_kills)
        hub = services.pressure
        if hub is None:
            return
        self._subscribe(hub.watch_psi(f"{services.proc}/pressure/memory", self.wake))
        self._watch_limit()

    def _wake_on_limit(self) -> None:
        """self.wake under another identity, so the limit's wake-ups can be dropped alone."""
        self.wake()

    def _watch_limit(self) -> None:
        """Wake when the cgroup holding the limit nears it: again whenever the limit moves.

        A v1 threshold is a byte value fixed at registration, and the limit that
        applies can change or move to another ancestor (systemctl set-property,
        a container runtime's update) while the process runs.
        """
        hub, watch = self.services.pressure, self.cgroup
        if hub is None or self.target.threshold_base != "cgroup":
            return  # the cgroup's events say nothing about RSS against MemTotal
        limit = None
        if watch is not None and watch.limit is not None and watch.limit_bytes:
            limit = (watch.limit.directory, watch.limit_bytes)
        if limit == self._watched_limit:
            return
        if self._watched_limit is not None:
            hub.unsubscribe(self._wake_on_limit)
        self._watched_limit = limit
        if limit is None or watch is None:
            return
        directory, limit_bytes = limit
        if watch.cgroup.version == 1:
            threshold_bytes = limit_bytes * self.target.threshold // 100
            self._subscribe(hub.watch_v1_usage(directory, threshold_bytes, self._wake_on_limit))
        else:
            self._subscribe(hub.watch_v2_events(directory, self._wake_on_limit))
            self._subscribe(
                hub.watch_psi(os.path.join(directory, "memory.pressure"), self._wake_on_limit)
            )

    def _subscribe(self, outcome: Union[str, Unreadable]) -> None:
        if isinstance(outcome, Unreadable):
            self.wakeup_problems.append(outcome)
        elif outcome not in self.wakeups:
            self.wakeups.append(outcome)

    def detach(self) -> None:
        if self.services.pressure is not None:
            self.services.pressure.unsubscribe(self.wake)
            self.services.pressure.unsubscribe(self._wake_on_limit)

    async def run(self) -> None:
        """Tick until the process is gone."""
        try:
            while self.ended is None:
                delay = await self.tick()
                self.last_progress = time.monotonic()
                if self.ended is None:
                    await self._sleep(delay)
        finally:
            self.state.above.discard(self.pid)
            self.detach()

    async def _sleep(self, delay: float) -> None:
        """Wait for the delay or a wake-up: one future and one timer, the cheapest
        wait asyncio offers (this runs for every tick of every process), and a
        cancellation is never swallowed by a wake-up racing with it."""
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        timer = loop.call_later(delay, self.wake)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def tick(self) -> float:
        """One poll; returns how long to wait before the next."""
        watermark = self.services.kernel_log.serial
        liveness = check_process(
            self.pid, self.identity.exe, self.identity.start_ticks, self.services.proc
        )
        if liveness.verdict is not Verdict.SAME:
            self._ended(liveness)
            return 0.0
        if liveness.stat is not None and not liveness.stat.kill_pending:
            self._alive_after = watermark
        measure = self._measure()
        if measure is None:
            # The next tick's identity check tells an exit from a passing failure.
            return self.target.interval
        ratio = measure.percent / self.target.threshold
        if ratio >= 1:
            await self._above(measure)
        else:
            if self.pid in self.state.above:
                self.state.above.discard(self.pid)
                self.log_event(
                    "info", "back_below", measure.message, usage_percent=round(measure.percent, 2)
                )
            await self._keep_fresh(ratio)
        return self.next_delay(ratio)

    def next_delay(self, ratio: float) -> float:
        """Twice the interval when far below, shrinking to min_interval at the threshold."""
        interval, floor = self.target.interval, self.target.min_interval
        if ratio >= 1:
            return floor
        if ratio <= 0.5:
            return interval * (2 - 2 * ratio)
        return floor + (interval - floor) * (1 - ratio) * 2

    def _measure(self) -> Optional[Measure]:
        target = self.target
        if target.threshold_base == "cgroup":
            measure = self._measure_cgroup()
            if measure is not None:
                return measure
        rss_kb = read_rss_kb(self.pid, self.services.proc)
        total_kb = self.services.mem_total.kb()
        if isinstance(rss_kb, Unreadable) or isinstance(total_kb, Unreadable):
            return None
        percent = percent_of(rss_kb, total_kb)
        self._current_kb = rss_kb
        return Measure(
            percent, usage_line(target.name, self.pid, rss_kb, percent, target.threshold)
        )

    def _measure_cgroup(self) -> Optional[Measure]:
        watch = self.cgroup
        if watch is not None and time.monotonic() - watch.refreshed > CGROUP_REFRESH:
            watch.refresh()
            self._watch_limit()
        if watch is None or watch.limit is None or not watch.limit_bytes:
            if not self._fallback_reported:
                self._fallback_reported = True
                self.log_event(
                    "warning",
                    "threshold_fallback",
                    f"{self.target.name} pid {self.pid}: no cgroup memory limit applies, "
                    "measuring against MemTotal instead",
                )
            return None
        usage = read_usage_bytes(watch.limit)
        if isinstance(usage, Unreadable):
            return None
        percent = percent_of(usage, watch.limit_bytes)
        self._current_kb = usage // 1024
        return Measure(
            percent,
            cgroup_usage_line(
                self.target.name,
                self.pid,
                watch.limit.path,
                usage // 1024,
                watch.limit_bytes // 1024,
                self.target.threshold,
            ),
        )

    async def _snapshot(self, force: bool = False) -> Optional[Snapshot]:
        """Take a snapshot unless the last one was too recent for what it cost."""
        now = time.monotonic()
        if not force and now < self._next_snapshot_at:
            return None
        services = self.services
        started = time.monotonic()
        snapshot = await asyncio.to_thread(
            take_snapshot,
            self.pid,
            self.target.sections,
            self.identity.start_ticks,
            services.proc,
            services.cgroups,
        )
        cost = time.monotonic() - started
        self._next_snapshot_at = time.monotonic() + cost / SNAPSHOT_DUTY
        if snapshot.identity is None and any(p.reason == "reused" for p in snapshot.problems):
            self._ended(Liveness(Verdict.REUSED, None, snapshot.problems[-1].detail))
            return None
        if snapshot.identity is None:
            return None
        ended_during = self._ended_during(snapshot)
        if self.last_snapshot is None or not ended_during:
            self.last_snapshot = snapshot
            self._kept_kb = self._current_kb
        watch = self.cgroup
        if (
            not ended_during
            and snapshot.cgroup is not None
            and watch is not None
            and snapshot.cgroup.cgroup.directory == watch.cgroup.directory
        ):
            watch.apply(snapshot.cgroup)
            self._watch_limit()
        return snapshot

    def _ended_during(self, snapshot: Snapshot) -> bool:
        """Whether the process was OOM-killed or exited before this snapshot's reads were done.

        Reads that overlap the exit come back torn (no VmRSS once the mm is gone, the
        root cgroup, smaps cut short, the OOM counter already raised), so such a
        snapshot must not displace the complete one before it as the evidence, nor
        the counter oom_killed compares with. The kernel logs an OOM kill before the
        victim starts to exit, so a report already in the log means they may overlap.
        """
        if snapshot.gone:
            return True
        # Outside the initial pid namespace a kill is matched by name and cgroup,
        # which while the process lives could claim a same-named sibling's kill.
        return self.services.kernel_log.pids_are_ours and self._kill_report() is not None

    def _kill_report(self) -> Optional[OomKillReport]:
        """This process's OOM kill in the kernel log, once it is there. Remembered: outside
        the initial pid namespace the kernel log hands each report out only once."""
        if self._kill is None:
            started_usec = (
                self.identity.start_ticks * 1_000_000 // CLOCK_TICKS - boottime_offset_usec()
            )
            cgroup_path = self.cgroup.cgroup.path if self.cgroup else None
            self._kill = self.services.kernel_log.kill_of(
                self.pid, started_usec, self.identity.name, cgroup_path, self._alive_after
            )
        return self._kill

    async def _keep_fresh(self, ratio: float) -> None:
        last = self.last_snapshot
        due = (
            last is None
            or ratio >= KEEP_NEAR_RATIO
            or abs(self._current_kb - self._kept_kb) > self._kept_kb * KEEP_ON_GROWTH
            or time.time() - last.taken_at > KEEP_MAX_AGE
        )
        if due:
            await self._snapshot()

    async def _above(self, measure: Measure) -> None:
        crossed = self.pid not in self.state.above
        snapshot = await self._snapshot(force=crossed)
        if self.ended is not None:
            return
        self.state.above.add(self.pid)
        now = time.monotonic()
        if self.state.count_reached or (not crossed and now < self._next_emit_at):
            return
        self._next_emit_at = now + self.target.interval
        if crossed and snapshot is not None:
            self._emit_full("threshold_crossed", snapshot, measure)
        elif snapshot is not None and self._full_due(snapshot):
            self._emit_full("snapshot", snapshot, measure)
        else:
            self._emit_sample(measure)
        if self.state.count_reached:
            self.log_event(
                "info",
                "count_reached",
                f"{self.target.name}: {self.target.count} snapshots emitted, "
                "reporting stops (count)",
            )

    def _full_due(self, snapshot: Snapshot) -> bool:
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

    def _emit_full(self, event: str, snapshot: Snapshot, measure: Measure) -> None:
        self.last_full = snapshot
        self.state.snapshots_emitted += 1
        self.log_event(
            "warning",
            event,
            measure.message,
            threshold_base=self.target.threshold_base,
            **snapshot_fields(snapshot, self.target.detail, self._cmdline()),
        )

    def _emit_sample(self, measure: Measure) -> None:
        """A few hundred bytes: the figures against every base, and the last snapshot's counts."""
        fields: dict[str, Any] = {
            "threshold_base": self.target.threshold_base,
            "usage_percent": round(measure.percent, 2),
        }
        last = self.last_snapshot
        if last is not None:
            if last.memory is not None:
                fields["memory"] = memory_dict(last.memory)
            if last.cgroup is not None:
                fields["cgroup"] = cgroup_dict(last.cgroup)
            fields["counts"] = {
                "mappings": None if last.mappings is None else len(last.mappings),
                "connections": None if last.connections is None else len(last.connections),
                "age_ms": round((time.time() - last.taken_at) * 1000),
            }
        self.log_event("warning", "sample", measure.message, **fields)

    def _ended(self, liveness: Liveness) -> None:
        """The process is gone: say whether the OOM killer took it, and with what evidence."""
        reason = GONE_REASONS.get(liveness.verdict, "unverifiable")
        self.ended = reason
        if liveness.verdict is Verdict.EXITED and self._report_oom_kill():
            return
        self.log_event(
            "notice",
            "target_gone",
            f"{self.target.name} pid {self.pid} gone: {reason}",
            reason=reason,
            detail=liveness.detail,
            process=self.process_fields(),
        )

    def _report_oom_kill(self) -> bool:
        report = self._kill_report()
        before = self.cgroup.oom_kills if self.cgroup else None
        after = self.cgroup.read_oom_kills() if self.cgroup else None
        kill = kill_dict(
            report, before, after, self.cgroup.cgroup.directory if self.cgroup else None
        )
        if not kill["sources"]:
            return False
        if self.cgroup is not None and before is not None and after is not None:
            self.services.neighbour_kills.claim(
                self.cgroup.cgroup.directory, max(0, after - before)
            )
        last = self.last_snapshot
        killed_at = time.time() if report is None else wall_time_of(report.usec_since_boot)
        age_ms = None if last is None else max(0, round((killed_at - last.taken_at) * 1000))
        where = ""
        if self.cgroup is not None and self.cgroup.limit is not None and self.cgroup.limit_bytes:
            where = (
                f" (cgroup {self.cgroup.limit.path} limit "
                f"{human_kb(self.cgroup.limit_bytes // 1024)})"
            )
        message = (
            f"{self.target.name} pid {self.pid} ({self.identity.name}) was killed by the OOM "
            f"killer{where}; "
            + ("no snapshot was taken" if age_ms is None else f"last snapshot {age_ms} ms old")
        )
        last_fields = None
        if last is not None:
            # The kill section and the process come first; the snapshot gets the rest.
            last_fields = snapshot_fields(
                last, self.target.detail, self._cmdline(), budget=OOM_KILLED_SNAPSHOT_BUDGET
            )
            last_fields["age_ms"] = age_ms
        self.log_event(
            "error",
            "oom_killed",
            message,
            kill=kill,
            process=self.process_fields(),
            last_snapshot=last_fields,
        )
        return True

    def _cmdline(self) -> Optional[list[str]]:
        return self.identity.cmdline[:1] if self.state.redact_cmdline else None

    def process_fields(self) -> dict[str, Any]:
        return process_fields(self.identity, self.target.detail, self._cmdline())

    def log_event(self, level: str, event: str, message: str, **fields: Any) -> None:
        getattr(self.state.log, level)(
            event,
            target=self.target.name,
            pid=self.pid,
            message=message,
            threshold_percent=self.target.threshold,
            **fields,
        )
