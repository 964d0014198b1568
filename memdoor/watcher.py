"""One asyncio task per watched process.

Each tick costs two tiny reads (stat for identity, statm for RSS) so hundreds
of processes can be watched at a one-second interval. Only at or above the
threshold does the watcher take a full snapshot, in a worker thread because
smaps of a large process can take tens of milliseconds and block on the
target's mmap lock.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from memdoor.collect.identity import ProcessIdentity
from memdoor.collect.liveness import Liveness, Verdict, check_process
from memdoor.collect.memory import read_rss_kb, usage_percent
from memdoor.collect.reading import Unreadable
from memdoor.config import ResolvedTarget
from memdoor.messages import usage_line
from memdoor.render.snapshot_dict import process_dict, snapshot_dict
from memdoor.snapshot import Snapshot, take_snapshot
from memdoor.system_memory import MemTotal

GONE_REASONS = {
    Verdict.EXITED: "exited",
    Verdict.EXE_MISMATCH: "exe_mismatch",
    Verdict.REUSED: "pid_reused",
}


@dataclass
class TargetState:
    """What the watchers of one target share: its config, its budget, its counters."""

    target: ResolvedTarget
    log: Any
    mem_total: MemTotal
    redact_cmdline: bool
    proc: str = "/proc"
    snapshots_emitted: int = 0
    above: set[int] = field(default_factory=set)

    @property
    def count_reached(self) -> bool:
        return self.target.count is not None and self.snapshots_emitted >= self.target.count


class ProcessWatcher:
    def __init__(self, state: TargetState, identity: ProcessIdentity) -> None:
        self.state = state
        self.pid = identity.pid
        self.identity = identity
        self.last_snapshot: Optional[Snapshot] = None
        self.last_progress = time.monotonic()
        self.ended: Optional[str] = None

    @property
    def target(self) -> ResolvedTarget:
        return self.state.target

    async def run(self) -> None:
        """Tick until the process is gone or the target's count is used up."""
        try:
            while self.ended is None:
                await self.tick()
                self.last_progress = time.monotonic()
                if self.ended is None:
                    await asyncio.sleep(self.target.interval)
        finally:
            self.state.above.discard(self.pid)

    async def tick(self) -> None:
        liveness = check_process(
            self.pid, self.identity.exe, self.identity.start_ticks, self.state.proc
        )
        if liveness.verdict is not Verdict.SAME:
            self._gone(liveness)
            return
        rss_kb = read_rss_kb(self.pid, self.state.proc)
        total_kb = self.state.mem_total.kb()
        if isinstance(rss_kb, Unreadable) or isinstance(total_kb, Unreadable):
            # The next tick's identity check tells an exit from a passing failure.
            return
        percent = usage_percent(rss_kb, total_kb)
        if percent >= self.target.threshold:
            await self._above(percent)
        elif self.pid in self.state.above:
            self.state.above.discard(self.pid)
            self.log_event(
                "info",
                "back_below",
                usage_line(self.target.name, self.pid, rss_kb, percent, self.target.threshold),
                usage_percent=round(percent, 2),
                rss_kb=rss_kb,
            )

    async def _above(self, percent: float) -> None:
        if self.state.count_reached:
            return
        snapshot = await asyncio.to_thread(
            take_snapshot,
            self.pid,
            self.target.sections,
            self.identity.start_ticks,
            self.state.proc,
        )
        if snapshot.identity is None and any(p.reason == "reused" for p in snapshot.problems):
            self._gone(Liveness(Verdict.REUSED, None, snapshot.problems[-1].detail))
            return
        self.last_snapshot = snapshot
        crossed = self.pid not in self.state.above
        self.state.above.add(self.pid)
        self.state.snapshots_emitted += 1
        memory = snapshot.memory
        message = usage_line(
            self.target.name,
            self.pid,
            memory.rss_kb if memory else None,
            memory.usage_percent if memory else percent,
            self.target.threshold,
        )
        cmdline = self.identity.cmdline[:1] if self.state.redact_cmdline else None
        self.log_event(
            "warning",
            "threshold_crossed" if crossed else "snapshot",
            message,
            **snapshot_dict(snapshot, cmdline),
        )
        if self.state.count_reached:
            self.log_event(
                "info",
                "count_reached",
                f"{self.target.name}: {self.target.count} "
                "snapshots emitted, reporting stops (count)",
            )

    def _gone(self, liveness: Liveness) -> None:
        reason = GONE_REASONS.get(liveness.verdict, "unverifiable")
        self.ended = reason
        self.log_event(
            "notice",
            "target_gone",
            f"{self.target.name} pid {self.pid} gone: {reason}",
            reason=reason,
            detail=liveness.detail,
            process=self.process_fields(),
        )

    def process_fields(self) -> dict[str, Any]:
        cmdline = self.identity.cmdline[:1] if self.state.redact_cmdline else None
        return process_dict(self.identity, cmdline)

    def log_event(self, level: str, event: str, message: str, **fields: Any) -> None:
        getattr(self.state.log, level)(
            event,
            target=self.target.name,
            pid=self.pid,
            message=message,
            threshold_percent=self.target.threshold,
            **fields,
        )
