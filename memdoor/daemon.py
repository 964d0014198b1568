"""The daemon: supervision of target tasks, signals, sd_notify and the watchdog.

Everything runs on one asyncio loop, and nothing on it waits for a reader:
records go to sinks that queue or drop (memdoor.sinks), snapshots to daemon
worker threads (memdoor.worker_threads). SIGTERM/SIGINT stop it within a
second whatever a sink or a target is doing, SIGHUP reloads the configuration
target by target (unchanged targets keep their state) and applies or reports
every changed daemon-wide key, and the watchdog is only fed while the loop and
every target task are making progress, so systemd restarts a daemon that
wedged.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any, Optional

from memdoor.collect.cgroup import CgroupMounts, find_cgroup_mounts
from memdoor.collect.reading import Unreadable
from memdoor.config import Config, ConfigError, RunningConfig, load_config, running_config
from memdoor.emitter import DaemonRecords
from memdoor.notify import Notifier, Watchdog
from memdoor.oom.kernel_log import KernelLog
from memdoor.oom.nearby import (
    NEARBY_PERIOD,
    NeighbourKillCounter,
    nearby_from_report,
)
from memdoor.oom.oomd import oomd_evidence
from memdoor.outputs import build_dispatcher, choose_sinks, unapplied_sink_keys
from memdoor.prekill_hook import start_prekill_hook
from memdoor.pressure import PressureHub
from memdoor.procfs.kmsg import OomKillReport
from memdoor.records import RecordLog
from memdoor.sinks.dispatch import Dispatcher
from memdoor.sinks.stdout import StdoutSink, StdoutView, stderr_notices
from memdoor.system_memory import MemTotal
from memdoor.targets import Targets
from memdoor.watch.context import Services
from memdoor.worker_threads import SNAPSHOT_THREADS, DaemonThreadPool

STATUS_PERIOD = 5.0
# From SIGTERM to the end of run(): target tasks get a part of it, the sinks'
# queues the rest. What is still queued then (a reader that stopped reading)
# is left behind.
SHUTDOWN_SECONDS = 0.5
TARGETS_STOP_SECONDS = 0.25


def changed_settings(old: Config, new: Config) -> list[str]:
    """The daemon-wide keys ([daemon], [sinks.*]) whose value differs, as dotted paths."""

    def flat(config: Config) -> dict[str, Any]:
        keys = {f"daemon.{key}": value for key, value in config.daemon.model_dump().items()}
        for sink, settings in config.sinks.model_dump().items():
            keys.update({f"sinks.{sink}.{key}": value for key, value in settings.items()})
        return keys

    before, after = flat(old), flat(new)
    return [key for key, value in after.items() if before.get(key) != value]


def evidence_sources(services: Services, cgroup_problem: Optional[Unreadable]) -> dict[str, str]:
    """Which OOM evidence and cgroup figures this host lets us read, said once at start."""
    layout = services.cgroups
    unavailable = services.kernel_log.unavailable
    memory = None
    if layout is not None and layout.v2_memory and layout.v2 is not None:
        memory = f"cgroup v2 at {layout.v2.mount_point}"
    elif layout is not None and layout.v1_memory is not None:
        memory = f"cgroup v1 at {layout.v1_memory.mount_point}"
    if memory is None and layout is not None and layout.problems:
        memory = f"unknown: {layout.problems[0].detail}"
    return {
        "kmsg": "readable"
        if unavailable is None
        else f"{unavailable.reason}: {unavailable.detail}",
        "memory_cgroup": memory
        or (cgroup_problem.detail if cgroup_problem else "no memory controller"),
        **oomd_evidence(layout is not None and layout.v2_memory, services.oomd),
    }


class Daemon:
    def __init__(
        self,
        config_path: Optional[str],
        config: RunningConfig,
        proc: str = "/proc",
        stdout_view: StdoutView = "auto",
    ) -> None:
        self.config_path = config_path
        self.config = config
        layout = find_cgroup_mounts(proc)
        self.cgroup_problem = layout if isinstance(layout, Unreadable) else None
        self.services = Services(
            mem_total=MemTotal(proc),
            cgroups=layout if isinstance(layout, CgroupMounts) else None,
            kernel_log=KernelLog(),
            pressure=PressureHub(),
            proc=proc,
            neighbour_kills=NeighbourKillCounter(proc),
        )
        # Opened once: every dispatcher a reload builds shares them.
        self.stdout = StdoutSink(view=stdout_view)
        self.stderr = stderr_notices()
        self.dispatcher = build_dispatcher(config.settings, self.stdout, self.stderr)
        self.records = self._records_for(self.dispatcher)
        self.notifier = Notifier(self.records.notify_failed)
        self.targets = Targets(self.services)
        self.watchdog = Watchdog(self.notifier, self.targets.stale)
        self._stop = asyncio.Event()
        self._reload_requested = asyncio.Event()

    def _records_for(self, dispatcher: Dispatcher) -> DaemonRecords:
        records = DaemonRecords(RecordLog(dispatcher))
        # Through self.records: after a reload the failure goes to the new sinks.
        dispatcher.on_failure = lambda sink, detail: self.records.sink_failed(sink, detail)
        return records

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Snapshots run in worker threads. Two threads keep both cores of a
        # small host busy; asyncio's default (CPUs + 4) only adds glibc malloc
        # arenas, megabytes of RSS each, for reads that the kernel serialises
        # per process anyway.
        executor = DaemonThreadPool(SNAPSHOT_THREADS, "memdoor-snapshot")
        loop.set_default_executor(executor)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)
        kernel_log = self.services.kernel_log
        kernel_log.start(loop)
        kernel_log.listeners.append(self._oom_kill_seen)
        self.services.group_kills.emit = lambda gathered: self.records.oom_group_killed(gathered)
        layout = self.services.cgroups
        self.services.oomd.start(loop, follow_journal=layout is not None and layout.v2_memory)
        hook, hook_state = await start_prekill_hook(
            self.services,
            self.targets,
            lambda: self.records,
            lambda: self.config.settings.daemon.redact_cmdline,
        )
        if self.services.pressure is not None:
            self.services.pressure.start(loop)
        sinks = [
            choice.to_dict() for choice in choose_sinks(self.config.settings, self.stdout).values()
        ]
        for sink in sinks:
            if sink["state"] == "unavailable":
                self.dispatcher.notice(f"sink {sink['name']} unavailable: {sink['detail']}")
        unheard = self.services.pidfile_changes.open(loop)
        if unheard is not None:
            self.dispatcher.notice(f"pidfile writes unheard ({unheard}): read on the interval only")
        self.records.daemon_started(
            self.config_path,
            len(self.config.targets),
            sinks,
            {**evidence_sources(self.services, self.cgroup_problem), "prekill_hook": hook_state},
        )
        self._apply_targets()
        helpers = [loop.create_task(self._report_status())]
        if kernel_log.unavailable is not None:
            helpers.append(loop.create_task(self._count_neighbour_kills()))
        self.notifier.ready(self.status_line())
        self.watchdog.set_enabled(self.config.settings.daemon.watchdog)
        try:
            while not self._stop.is_set():
                reload_wait = loop.create_task(self._reload_requested.wait())
                stop_wait = loop.create_task(self._stop.wait())
                await asyncio.wait({reload_wait, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                reload_wait.cancel()
                stop_wait.cancel()
                if self._reload_requested.is_set() and not self._stop.is_set():
                    self._reload_requested.clear()
                    self.reload()
        finally:
            deadline = time.monotonic() + SHUTDOWN_SECONDS
            self.notifier.stopping()
            self.records.daemon_stopping()
            self.watchdog.stop()
            for task in helpers:
                task.cancel()
            stuck = await self.targets.stop(TARGETS_STOP_SECONDS)
            if stuck:
                self.dispatcher.notice(f"stopping without waiting for {', '.join(stuck)}")
            self.services.group_kills.flush()
            await asyncio.gather(*helpers, return_exceptions=True)
            kernel_log.stop(loop)
            self.services.oomd.stop(loop)
            self.services.pidfile_changes.close(loop)
            if hook is not None:
                hook.close()
            if self.services.pressure is not None:
                self.services.pressure.close()
            executor.shutdown(wait=False)
            self._close_sinks(deadline)
        return 0

    def _close_sinks(self, deadline: float) -> None:
        """Give the queued records until deadline to get out, then leave them."""
        self.stdout.close(max(0.0, deadline - time.monotonic()))
        if self.stderr is not None:
            self.stderr.close(max(0.0, deadline - time.monotonic()))
        if self.dispatcher.journald is not None:
            self.dispatcher.journald.close()

    def _oom_kill_seen(self, report: OomKillReport) -> None:
        """A kill in the kernel log: wake the victim's watcher now, so its oom_killed does
        not wait for a tick, and tell each target whose processes share its cgroup.
        Outside the initial pid namespace the log's pid is not ours: the watchers of
        the victim's cgroup are woken instead, and find out at their tick."""
        placements = self.targets.placements()
        if self.services.kernel_log.pids_are_ours:
            self.targets.wake({report.pid}, None)
        else:
            self.targets.wake(set(), report.task_memcg)
        self.targets.tell(nearby_from_report(report, placements))

    async def _count_neighbour_kills(self) -> None:
        """Without the kernel log, neighbours' kills come from the cgroups' OOM counters."""
        counter = self.services.neighbour_kills
        while True:
            await asyncio.sleep(NEARBY_PERIOD)
            self.targets.tell(counter.check_placements(self.targets.placements()))

    def reload(self) -> None:
        """Apply a new config; an invalid one is reported and the running one stays."""
        self.notifier.reloading()
        try:
            new_config = (
                running_config(load_config(self.config_path), self.config.targets)
                if self.config_path
                else self.config
            )
        except ConfigError as exc:
            self.records.config_invalid(exc, "reload rejected, the running configuration stays")
            self.notifier.ready(self.status_line())
            return
        settings = changed_settings(self.config.settings, new_config.settings)
        if new_config.settings.sinks != self.config.settings.sinks:
            self.dispatcher = build_dispatcher(
                new_config.settings, self.stdout, self.stderr, previous=self.dispatcher
            )
            self.records = self._records_for(self.dispatcher)
        self.config = new_config
        # Inherited [daemon] keys reach the targets they change (restarted), and
        # redact_cmdline every running target, through _apply_targets.
        self.watchdog.set_enabled(new_config.settings.daemon.watchdog)
        added, removed, changed = self._apply_targets()
        unapplied = unapplied_sink_keys(settings, new_config.settings, self.stdout)
        self.records.config_reloaded(added, removed, changed, settings, unapplied)
        self.notifier.ready(self.status_line())

    def _apply_targets(self) -> tuple[list[str], list[str], list[str]]:
        settings, targets = self.config
        return self.targets.apply(targets, self.records.writer, settings.daemon.redact_cmdline)

    def status_line(self) -> str:
        targets, processes, above = self.targets.counts()
        dropped = "".join(
            f", {delivery.dropped} dropped on {sink}"
            for sink, delivery in self.dispatcher.delivery.items()
            if delivery.dropped
        )
        return (
            f"watching {targets} targets ({processes} processes), "
            f"{above} above threshold, {self.dispatcher.records} records emitted{dropped}"
        )

    async def _report_status(self) -> None:
        """STATUS= when it changes; and kernel log records lost since the last look."""
        last = ""
        while True:
            line = self.status_line()
            if line != last:
                self.notifier.status(line)
                last = line
            losses = self.services.kernel_log.take_losses()
            if losses is not None:
                self.records.kernel_log_lost(losses)
            await asyncio.sleep(STATUS_PERIOD)
