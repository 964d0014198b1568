"""One asyncio task per watched process: the poll loop, on one screen.

A tick checks the process is still the one adopted (stat), measures it against
its threshold (memdoor.watch.measure), keeps a fresh snapshot as evidence
whatever the threshold (memdoor.watch.evidence) and writes what crossed
(memdoor.emitter). Polling adapts: the closer a process is to its threshold,
the shorter the wait, and a kernel notification (memdoor.watch.wakeups) cuts
the wait short. A tick with nothing to await, most of them at rest, runs in its
timer's callback and leaves the task asleep (memdoor.watch.pause). When the
process is gone, memdoor.oom decides whether the OOM killer took it.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Optional, Union

from memdoor.collect.cgroup import memory_cgroup_of
from memdoor.collect.identity import ProcessIdentity, where_to_read
from memdoor.collect.kept_process import KeptProcess
from memdoor.collect.liveness import Liveness, Verdict
from memdoor.collect.owner import read_ownership
from memdoor.collect.reading import Unreadable
from memdoor.config import ResolvedTarget
from memdoor.emitter import ProcessRecords
from memdoor.oom.group import GroupVictim
from memdoor.oom.witness import KillWitness
from memdoor.render.owner import owner_dict
from memdoor.watch.context import Services, TargetState
from memdoor.watch.evidence import KEEP_NEAR_RATIO, EvidenceKeeper, PidReused, Taken
from memdoor.watch.growth import GrowthRing
from memdoor.watch.measure import LimitTracker, Measure, ThresholdMeter
from memdoor.watch.pause import Due, Pause
from memdoor.watch.wakeups import Wakeups

GONE_REASONS = {
    Verdict.EXITED: "exited",
    Verdict.EXE_MISMATCH: "exe_mismatch",
    Verdict.REUSED: "pid_reused",
}


def _witness_of(identity: ProcessIdentity, services: Services) -> KillWitness:
    """The process's kill witness, told what the daemon's watchers share."""
    return KillWitness(
        identity,
        services.kernel_log,
        services.neighbour_kills,
        services.oomd,
        services.parent_kills,
    )


class ProcessWatcher(Pause):
    def __init__(self, state: TargetState, identity: ProcessIdentity) -> None:
        super().__init__()  # between ticks: memdoor.watch.pause
        services = state.services
        self.state = state
        self.pid = identity.pid
        self.identity = identity
        self.records = ProcessRecords(state.records, identity)
        self.witness = _witness_of(identity, services)
        self.tracker: Optional[LimitTracker] = None
        self.files = KeptProcess(self.pid, services.proc)
        self.meter = ThresholdMeter(state.target, self.files, services.mem_total)
        self.evidence = EvidenceKeeper(state.target, identity, self.witness, services)
        self.growth = GrowthRing()
        # Calls self.wake by name: a test may replace wake on the instance.
        self.wakeups = Wakeups(services.pressure, self, state.target)
        self.ended: Optional[str] = None
        # What target_found warns of (a threshold no report can reach), found by attach().
        self.warnings: list[str] = []
        self._next_emit_at = 0.0

    @property
    def target(self) -> ResolvedTarget:
        return self.state.target

    def attach(self) -> list[Unreadable]:
        """Find whose it is and the cgroup, register wake-ups; returns what could not be done."""
        services = self.state.services
        ownership = read_ownership(self.pid, services.cgroups, services.proc)
        self.records.owner = owner_dict(ownership.owner, ownership.invocation_id)
        problems = list(ownership.problems)
        if services.cgroups is not None:
            tid, where = where_to_read(self.pid, services.proc)
            place = memory_cgroup_of(tid, services.cgroups, where)
            if isinstance(place, Unreadable):
                problems.append(place)
            else:
                self.tracker = self.meter.tracker = LimitTracker(place, services.limits)
                problem = self.tracker.refresh()
                if problem is not None:
                    problems.append(problem)
                self.witness.watch_cgroup(place, self.tracker.oom_kills)
        self.wakeups.start(services.proc, self.pid, self.tracker, self._counter_changed)
        unreachable = self.meter.unreachable()
        self.warnings = [] if unreachable is None else [unreachable]
        return problems + self.wakeups.problems

    def _counter_changed(self) -> None:
        """The cgroup's OOM counter file signalled: read now, tick at once if it moved."""
        if self.witness.counter_changed():
            self.wake()

    async def run(self) -> None:
        """Tick until the process is gone."""
        try:
            while self.ended is None:
                delay = await self.tick()
                self.last_progress = time.monotonic()
                waiter = None if self.ended is not None else self.arm(delay)
                if waiter is not None:
                    try:
                        await waiter
                    finally:
                        self.disarm()
        finally:
            self.state.now_below(self.pid)
            self.wakeups.cancel()
            self.witness.close()
            self.files.close()
            if self.tracker is not None:
                self.tracker.close()

    async def tick(self) -> float:
        """One poll; returns how long to wait before the next."""
        step = self.due_step()
        if not isinstance(step, tuple):
            return step
        action, delay = step
        await action()
        return delay

    def step(self) -> Union[float, Due]:
        """The tick's reads and verdict, on the loop: in the task or in the timer's
        callback (memdoor.watch.pause)."""
        watermark = self.witness.watermark()
        identity = self.identity
        liveness = self.files.check(identity.exe, identity.start_ticks)
        if liveness.task is None:
            return partial(self._ended, liveness), 0.0
        oom_kills = None if self.tracker is None else self.tracker.oom_kills
        self.witness.seen(liveness.task, watermark, oom_kills)
        measure = self.meter.measure(liveness.task)
        self.wakeups.follow_limit(self.tracker)
        if self.meter.fallback_news():
            self.records.threshold_fallback()
        target = self.state.target
        if measure is None:
            return target.interval
        self.growth.add(measure.base, time.monotonic(), measure.kb)
        ratio = measure.percent / target.threshold
        if ratio >= 1:
            return partial(self._above, measure), self.next_delay(ratio)
        if self.pid in self.state.above:
            self.state.now_below(self.pid)
            self.records.back_below(measure.message, measure.percent, measure.base)
        delay = self.next_delay(ratio)
        if self.evidence.stale(ratio, measure.kb):
            return partial(self._snapshot, measure.kb, pack=ratio < KEEP_NEAR_RATIO), delay
        return delay

    def next_delay(self, ratio: float) -> float:
        """Twice the interval when far below, shrinking to min_interval at the threshold."""
        interval, floor = self.target.interval, self.target.min_interval
        if ratio >= 1:
            return floor
        if ratio <= 0.5:
            return interval * (2 - 2 * ratio)
        return floor + (interval - floor) * (1 - ratio) * 2

    async def _snapshot(
        self, measured_kb: int, force: bool = False, pack: bool = False
    ) -> Optional[Taken]:
        """pack: far below the threshold, where records seldom read the kept snapshot."""
        outcome = await self.evidence.take(measured_kb, force, pack)
        if isinstance(outcome, PidReused):
            await self._ended(Liveness(Verdict.REUSED, None, outcome.detail))
        if not isinstance(outcome, Taken):
            return None
        if not outcome.torn and self.tracker and self.tracker.take_snapshot(outcome.snapshot):
            self.wakeups.follow_limit(self.tracker)
        return outcome

    async def _above(self, measure: Measure) -> None:
        crossed = self.pid not in self.state.above
        taken = await self._snapshot(measure.kb, force=crossed)
        if self.ended is not None:
            return
        snapshot = None if taken is None else taken.snapshot
        if crossed and snapshot is None:
            # The crossing's own reads failed (the process dying under them): the
            # kept snapshot is the evidence; with none, the next tick crosses again.
            snapshot = self.evidence.last
            if snapshot is None:
                return
        self.state.now_above(self.pid)
        now = time.monotonic()
        if self.state.count_reached or (not crossed and now < self._next_emit_at):
            return
        self._next_emit_at = now + self.target.interval
        growth = self.growth.growth(measure.base, measure.limit_kb).to_dict()
        if snapshot is not None and (crossed or self.evidence.full_due(snapshot)):
            previous, self.evidence.last_full = self.evidence.last_full, snapshot
            self.state.snapshots_emitted += 1
            self.records.full_snapshot(
                crossed, snapshot, measure.message, measure.base, growth, previous
            )
        else:
            last = self.evidence.last
            self.records.sample(measure.message, measure.percent, measure.base, last, growth)
        if self.state.count_reached:
            self.records.count_reached()

    async def _ended(self, liveness: Liveness) -> None:
        """The process is gone: say whether the OOM killer took it, and with what evidence."""
        reason = GONE_REASONS.get(liveness.verdict, "unverifiable")
        self.ended = reason
        if liveness.verdict is not Verdict.EXITED:
            self.records.target_gone(reason, liveness.detail)
            return
        self.witness.gone()
        try:
            await self.witness.settle()
        finally:  # a daemon stopping cuts the wait short, never the record
            kill = self.witness.verdict()
            if kill is None:
                self.records.target_gone(reason, liveness.detail)
            else:
                limit = None if self.tracker is None else self.tracker.applied_limit
                self.records.oom_killed(kill, self.evidence.last, limit)
            if kill is not None and kill.group is not None:
                victim = GroupVictim(self.target.name, self.pid, self.identity.name)
                self.state.services.group_kills.victim(kill.group, victim)
