"""Every record memdoor writes, one typed method per event, so mypy checks each one.

The level comes from the event table (memdoor.events), the words of the MESSAGE
from memdoor.messages, the sections from memdoor.render; what each event carries
is decided here. Three scopes, because records say who they are about:
DaemonRecords for the daemon itself, TargetRecords for a configured target,
ProcessRecords for one watched process (target, pid and the threshold on each).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Protocol

from memdoor.collect.identity import ProcessIdentity
from memdoor.collect.reading import Unreadable
from memdoor.config import ConfigError, ResolvedTarget
from memdoor.events import EVENTS, Event
from memdoor.events import Level as Level
from memdoor.messages import human_kb, measured_line
from memdoor.oom.group import GatheredGroupKill
from memdoor.oom.kernel_log import wall_time_of
from memdoor.oom.kill import Kill
from memdoor.oom.kmsg_reader import KmsgLosses
from memdoor.oom.nearby import NearbyKill
from memdoor.process_text import note_escaped
from memdoor.procfs.cgroup_owner import parse_cgroup_owner
from memdoor.render.bounded import (
    Limits,
    Render,
    process_fields,
    record_fields,
    snapshot_fields,
)
from memdoor.render.owner import owner_dict
from memdoor.render.snapshot_dict import cgroup_dict, memory_dict
from memdoor.render.summary import MappingGroups
from memdoor.snapshot import Snapshot
from memdoor.vocabulary import Detail, MeasuredBase, rfc3339

# An oom_group_killed MESSAGE names this many watched victims, its lists hold at
# most GROUP_LISTED pids each (a container can hold thousands; `killed` counts all).
MESSAGE_VICTIMS = 5
GROUP_LISTED = 256


class RecordWriter(Protocol):
    def write(self, level: Level, event: Event, fields: dict[str, Any]) -> None: ...


def _write(writer: RecordWriter, event: Event, **fields: Any) -> None:
    writer.write(EVENTS[event].level, event, fields)


def _write_bounded(
    writer: RecordWriter,
    event: Event,
    detail: Detail,
    message: str,
    render: Optional[Render],
    fields: dict[str, Any],
) -> None:
    """A target's records carry what its processes control: under detail "summary"
    they are held to the record budget (memdoor.render.bounded)."""
    writer.write(EVENTS[event].level, event, record_fields(event, detail, message, fields, render))


def _prekill_snapshot(
    writer: RecordWriter,
    target: Optional[str],
    cgroup: str,
    snapshot: Snapshot,
    detail: Detail,
    redact_cmdline: bool,
) -> None:
    """A process of the cgroup systemd-oomd is about to kill, as its pre-kill hook saw it."""
    identity = snapshot.identity
    cmdline = identity.cmdline[:1] if redact_cmdline and identity is not None else None
    name = "?" if identity is None else identity.name
    whose = "watched" if target is not None else "not watched, among the cgroup's largest"
    _write_bounded(
        writer,
        Event.PREKILL_SNAPSHOT,
        detail,
        f"systemd-oomd is about to kill cgroup {cgroup}: pid {snapshot.pid} ({name}), {whose}",
        lambda limits: snapshot_fields(snapshot, detail, cmdline, limits),
        {"target": target, "pid": snapshot.pid, **note_escaped({"prekill_cgroup": cgroup})},
    )


class DaemonRecords:
    def __init__(self, writer: RecordWriter) -> None:
        self.writer = writer

    def daemon_started(
        self,
        config: Optional[str],
        targets: int,
        sinks: list[dict[str, str]],
        evidence: dict[str, str],
    ) -> None:
        """sinks: each sink's name, state (on, off, unavailable) and why."""
        used = ", ".join(sink["name"] for sink in sinks if sink["state"] == "on") or "none"
        _write(
            self.writer,
            Event.DAEMON_STARTED,
            message=f"memdoor started: {targets} targets, sinks {used}",
            config=config,
            daemon_pid=os.getpid(),
            sinks=sinks,
            evidence=evidence,
        )

    def daemon_stopping(self) -> None:
        _write(self.writer, Event.DAEMON_STOPPING, message="memdoor stopping")

    def config_reloaded(
        self,
        added: list[str],
        removed: list[str],
        changed: list[str],
        settings_changed: list[str],
        not_applied: list[dict[str, str]],
    ) -> None:
        """Targets by name; daemon-wide keys as dotted paths, and those that could not
        take effect with the reason."""
        message = (
            f"configuration reloaded: {len(added)} added, {len(removed)} removed, "
            f"{len(changed)} changed"
        )
        if settings_changed:
            message += f"; settings changed: {', '.join(settings_changed)}"
        if not_applied:
            message += f"; not applied: {', '.join(item['key'] for item in not_applied)}"
        _write(
            self.writer,
            Event.CONFIG_RELOADED,
            message=message,
            added=added,
            removed=removed,
            changed=changed,
            settings_changed=settings_changed,
            not_applied=not_applied,
        )

    def config_invalid(self, exc: ConfigError, consequence: str) -> None:
        """The file, and each key path with its reason (the first ones, if there are many)."""
        _write(
            self.writer,
            Event.CONFIG_INVALID,
            message=exc.message(consequence),
            **exc.record_fields(),
        )

    def sink_failed(self, sink: str, detail: str) -> None:
        _write(
            self.writer,
            Event.SINK_FAILED,
            message=f"sink {sink} failed: {detail}",
            sink=sink,
            detail=detail,
        )

    def notify_failed(self, detail: str) -> None:
        _write(self.writer, Event.NOTIFY_FAILED, message=detail, detail=detail)

    def prekill_snapshot(self, cgroup: str, snapshot: Snapshot, redact_cmdline: bool) -> None:
        """A process no target watches: held to the record budget like a target's."""
        _prekill_snapshot(self.writer, None, cgroup, snapshot, "summary", redact_cmdline)

    def oom_group_killed(self, gathered: GatheredGroupKill) -> None:
        group, victims = gathered.group, gathered.victims
        watched = {victim.pid for victim in victims}
        named = ", ".join(f"{v.target} pid {v.pid} ({v.name})" for v in victims[:MESSAGE_VICTIMS])
        more = len(victims) - MESSAGE_VICTIMS
        _write(
            self.writer,
            Event.OOM_GROUP_KILLED,
            message=f"the OOM killer killed cgroup {group.cgroup} as a group (memory.oom.group): "
            f"{len(group.pids)} process(es) together, {len(victims)} watched: {named}"
            + (f" and {more} more" if more > 0 else ""),
            group=note_escaped(
                {
                    "cgroup": group.cgroup,
                    "killed_at": rfc3339(wall_time_of(group.usec_since_boot)),
                    "killed": len(group.pids),
                    "pids": group.pids[:GROUP_LISTED],
                    "watched": [
                        note_escaped({"target": v.target, "pid": v.pid, "name": v.name})
                        for v in victims[:GROUP_LISTED]
                    ],
                    "unwatched_pids": [pid for pid in group.pids if pid not in watched][
                        :GROUP_LISTED
                    ],
                }
            ),
            owner=owner_dict(parse_cgroup_owner(group.cgroup)),
        )

    def kernel_log_lost(self, losses: KmsgLosses) -> None:
        _write(
            self.writer,
            Event.KERNEL_LOG_LOST,
            message=f"kernel log: {losses.overwritten} overwrite(s) before memdoor read them, "
            f"{losses.unparsable} unparsable record(s); OOM kills among them are known "
            "only from cgroup counters",
            overwritten=losses.overwritten,
            unparsable=losses.unparsable,
            detail=losses.detail,
        )


class TargetRecords:
    """A target's records. writer and redact_cmdline are replaced in place on reload,
    so the target's processes keep their state and follow the new settings."""

    def __init__(self, writer: RecordWriter, target: ResolvedTarget, redact_cmdline: bool) -> None:
        self.writer = writer
        self.target = target
        self.redact_cmdline = redact_cmdline

    def _write(self, event: Event, message: str, **fields: Any) -> None:
        fields = {"target": self.target.name, **fields}
        _write_bounded(self.writer, event, self.target.detail, message, None, fields)

    def target_waiting(self) -> None:
        self._write(Event.TARGET_WAITING, f"{self.target.name}: no process to watch yet")

    def target_unresolved(self, text: str, problem: Unreadable) -> None:
        """text: the problem in a line, as the supervisor compares it to say it once."""
        self._write(
            Event.TARGET_UNRESOLVED,
            f"{self.target.name}: cannot resolve: {text}",
            problems=[problem.to_dict()],
        )

    def supervision_failed(self, text: str) -> None:
        """A bug in the step that finds the target's processes; retried on its interval."""
        target = self.target
        self._write(
            Event.WATCHER_FAILED,
            f"{target.name}: supervision step failed, retried every {target.interval:g} s: {text}",
        )

    def watcher_failed(self, pid: int, error: BaseException) -> None:
        name = self.target.name
        self._write(Event.WATCHER_FAILED, f"{name} pid {pid}: watcher failed: {error!r}", pid=pid)

    def prekill_snapshot(self, cgroup: str, snapshot: Snapshot) -> None:
        target = self.target
        _prekill_snapshot(
            self.writer, target.name, cgroup, snapshot, target.detail, self.redact_cmdline
        )

    def oom_kill_nearby(self, nearby: NearbyKill) -> None:
        name = self.target.name
        if nearby.victim_pid is not None:
            message = (
                f"{name}: the OOM killer killed pid {nearby.victim_pid} ({nearby.victim_name}) "
                f"in the same cgroup {nearby.cgroup_path}"
            )
        else:
            message = (
                f"{name}: the OOM killer killed {nearby.kills} process(es) memdoor does not "
                f"watch in the same cgroup {nearby.cgroup_path} (told by its OOM counter; the "
                "kernel log, which would name them, is not readable)"
            )
        self._write(
            Event.OOM_KILL_NEARBY,
            message,
            pid=nearby.pid,
            threshold_percent=self.target.threshold,
            kill=nearby.kill.fields(),
            victim_pid=nearby.victim_pid,
            kills=nearby.kills,
            owner=owner_dict(parse_cgroup_owner(nearby.cgroup_path)),
        )


class ProcessRecords:
    """One watched process's records: each carries target, pid and the threshold."""

    def __init__(self, parent: TargetRecords, identity: ProcessIdentity) -> None:
        self.parent = parent
        self.identity = identity
        # The `owner` section (memdoor.render.owner), set once the process is adopted.
        self.owner: Optional[dict[str, Any]] = None

    @property
    def target(self) -> ResolvedTarget:
        return self.parent.target

    def _write(
        self, event: Event, message: str, render: Optional[Render] = None, **fields: Any
    ) -> None:
        """render gives the fields that shrink to fit the budget, after the others."""
        fields = {
            "target": self.target.name,
            "pid": self.identity.pid,
            "threshold_percent": self.target.threshold,
            **fields,
            **({} if self.owner is None else {"owner": self.owner}),
        }
        _write_bounded(self.parent.writer, event, self.target.detail, message, render, fields)

    def _cmdline(self) -> Optional[list[str]]:
        return self.identity.cmdline[:1] if self.parent.redact_cmdline else None

    def process(self, limits: Limits) -> dict[str, Any]:
        return process_fields(self.identity, self.target.detail, self._cmdline(), limits)

    def target_found(
        self,
        cgroup_path: Optional[str],
        wakeups: list[str],
        problems: list[Unreadable],
        warnings: Sequence[str] = (),
    ) -> None:
        identity = self.identity
        self._write(
            Event.TARGET_FOUND,
            f"{self.target.name}: watching pid {identity.pid} ({identity.exe or identity.name})",
            lambda limits: {
                "process": self.process(limits),
                **note_escaped({"cgroup_path": cgroup_path}),
                "wakeups": wakeups,
                "problems": [p.to_dict() for p in problems],
                "warnings": list(warnings),
            },
        )

    def full_snapshot(
        self,
        crossed: bool,
        snapshot: Snapshot,
        message: str,
        measured: MeasuredBase,
        growth: Optional[Mapping[str, Any]] = None,
        previous: Optional[Snapshot] = None,
    ) -> None:
        """threshold_crossed at the crossing, snapshot afterwards. growth: the measured
        figure's rates (memdoor.watch.growth); previous: this process's last full
        snapshot, against which each mapping group's change is given."""
        before = None
        if previous is not None and previous.mappings is not None:
            before = MappingGroups(previous.mappings, previous.taken_at)
        self._write(
            Event.THRESHOLD_CROSSED if crossed else Event.SNAPSHOT,
            measured_line(message, "crossing" if crossed else "full"),
            lambda limits: snapshot_fields(
                snapshot, self.target.detail, self._cmdline(), limits, before
            ),
            threshold_base=self.target.threshold_base,
            measured_base=measured,
            **({} if growth is None else {"growth": dict(growth)}),
        )

    def sample(
        self,
        message: str,
        percent: float,
        measured: MeasuredBase,
        last: Optional[Snapshot],
        growth: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """A few hundred bytes: the figures against every base, how fast the measured
        one grows, and the last snapshot's counts."""
        fields: dict[str, Any] = {
            "threshold_base": self.target.threshold_base,
            "measured_base": measured,
            "usage_percent": round(percent, 2),
        }
        if growth is not None:
            fields["growth"] = dict(growth)
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
        self._write(Event.SAMPLE, measured_line(message, "compact"), **fields)

    def back_below(self, message: str, percent: float, measured: MeasuredBase) -> None:
        self._write(
            Event.BACK_BELOW,
            measured_line(message, "below"),
            usage_percent=round(percent, 2),
            measured_base=measured,
        )

    def count_reached(self) -> None:
        target = self.target
        self._write(
            Event.COUNT_REACHED,
            f"{target.name}: {target.count} snapshots emitted, reporting stops (count)",
        )

    def threshold_fallback(self) -> None:
        self._write(
            Event.THRESHOLD_FALLBACK,
            f"{self.target.name} pid {self.identity.pid}: no cgroup memory limit applies, "
            "measuring against MemTotal instead",
        )

    def target_gone(self, reason: str, detail: str) -> None:
        self._write(
            Event.TARGET_GONE,
            f"{self.target.name} pid {self.identity.pid} gone: {reason}",
            lambda limits: {"reason": reason, "detail": detail, "process": self.process(limits)},
        )

    def oom_killed(
        self, kill: Kill, last: Optional[Snapshot], limit: Optional[tuple[str, int]]
    ) -> None:
        """limit: the cgroup path and bytes of the limit that applied, when known."""
        killed_at = kill.killed_at or time.time()
        age_ms = None if last is None else max(0, round((killed_at - last.taken_at) * 1000))
        where = "" if limit is None else f" (cgroup {limit[0]} limit {human_kb(limit[1] // 1024)})"
        killer = "systemd-oomd" if kill.killer == "systemd-oomd" else "the OOM killer"
        message = (
            f"{self.target.name} pid {self.identity.pid} ({self.identity.name}) was killed by "
            f"{killer}{where}; "
            + ("no snapshot was taken" if age_ms is None else f"last snapshot {age_ms} ms old")
        )

        def render(limits: Limits) -> dict[str, Any]:
            last_fields = None
            if last is not None:
                last_fields = snapshot_fields(last, self.target.detail, self._cmdline(), limits)
                last_fields["age_ms"] = age_ms
            return {
                "kill": kill.fields(self.identity.pid),
                "process": self.process(limits),
                "last_snapshot": last_fields,
            }

        self._write(Event.OOM_KILLED, message, render)
