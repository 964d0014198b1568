"""The daemon: supervision of target tasks, signals, sd_notify and the watchdog.

Everything runs on one asyncio loop. SIGTERM/SIGINT stop it cleanly, SIGHUP
reloads the configuration target by target (unchanged targets keep their
state), and the watchdog is only fed while the loop and every target task are
making progress, so systemd restarts a daemon that wedged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import socket
import time
from typing import Optional

from memdoor.collect.cgroup import CgroupMounts, find_cgroup_mounts
from memdoor.collect.reading import Unreadable
from memdoor.config import Config, ConfigError, effective_targets, load_config
from memdoor.emitter import DaemonRecords
from memdoor.notify import Notifier, watchdog_interval
from memdoor.oom.kernel_log import KernelLog
from memdoor.oom.nearby import (
    NEARBY_PERIOD,
    NeighbourKillCounter,
    nearby_from_report,
)
from memdoor.pressure import PressureHub
from memdoor.procfs.kmsg import OomKillReport
from memdoor.records import RecordLog
from memdoor.render.ecs import ecs_formatter
from memdoor.sinks.dispatch import Dispatcher, Formatter
from memdoor.sinks.journald import JournaldSender
from memdoor.sinks.stdout import StdoutSink, stdout_is_journal_stream
from memdoor.system_memory import MemTotal
from memdoor.targets import Targets
from memdoor.watch.context import Services

STATUS_PERIOD = 5.0
SNAPSHOT_THREADS = 2


def build_dispatcher(config: Config) -> Dispatcher:
    """Pick sinks; under systemd with the native journal sink, stdout would duplicate it."""
    journald_wanted = config.sinks.journald.enabled
    under_systemd = bool(os.environ.get("JOURNAL_STREAM"))
    journald = (
        JournaldSender(config.sinks.journald.socket)
        if journald_wanted is True or (journald_wanted == "auto" and under_systemd)
        else None
    )
    stdout_wanted = config.sinks.stdout.enabled and not (
        journald is not None and stdout_is_journal_stream()
    )
    # One formatter for both sinks, so an ECS document is rendered once per record.
    ecs = ecs_formatter(socket.gethostname())
    formatters: dict[str, Formatter] = {
        sink: ecs
        for sink, settings in (("stdout", config.sinks.stdout), ("journald", config.sinks.journald))
        if settings.format == "ecs"
    }
    return Dispatcher(StdoutSink() if stdout_wanted else None, journald, formatters)


class Daemon:
    def __init__(self, config_path: Optional[str], config: Config, proc: str = "/proc") -> None:
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
        self.dispatcher = build_dispatcher(config)
        self.records = self._records_for(self.dispatcher)
        self.notifier = Notifier(self.records.notify_failed)
        self.targets = Targets(self.services)
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
        loop.set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=SNAPSHOT_THREADS)
        )
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_requested.set)
        kernel_log = self.services.kernel_log
        kernel_log.start(loop)
        kernel_log.listeners.append(self._oom_kill_seen)
        if self.services.pressure is not None:
            self.services.pressure.start(loop)
        self.records.daemon_started(
            self.config_path,
            len(self.config.targets),
            self.dispatcher.sink_names,
            self._evidence_sources(),
        )
        self._apply_targets()
        helpers = [loop.create_task(self._report_status())]
        if kernel_log.unavailable is not None:
            helpers.append(loop.create_task(self._count_neighbour_kills()))
        period = watchdog_interval() if self.config.daemon.watchdog else None
        if period is not None:
            helpers.append(loop.create_task(self._feed_watchdog(period)))
        self.notifier.ready(self.status_line())
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
            self.notifier.stopping()
            self.records.daemon_stopping()
            for task in helpers:
                task.cancel()
            await self.targets.stop()
            await asyncio.gather(*helpers, return_exceptions=True)
            kernel_log.stop(loop)
            if self.services.pressure is not None:
                self.services.pressure.close()
        return 0

    def _evidence_sources(self) -> dict[str, str]:
        """Which OOM evidence and cgroup figures this host lets us read, said once at start."""
        layout = self.services.cgroups
        unavailable = self.services.kernel_log.unavailable
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
            or (self.cgroup_problem.detail if self.cgroup_problem else "no memory controller"),
        }

    def _oom_kill_seen(self, report: OomKillReport) -> None:
        """A kill in the kernel log: tell each target whose processes share the victim's cgroup."""
        self.targets.tell(nearby_from_report(report, self.targets.placements()))

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
            new_config = load_config(self.config_path) if self.config_path else self.config
        except ConfigError as exc:
            self.records.config_invalid(exc, "reload rejected, the running configuration stays")
            self.notifier.ready(self.status_line())
            return
        if new_config.sinks != self.config.sinks:
            if self.dispatcher.journald is not None:
                self.dispatcher.journald.close()
            self.dispatcher = build_dispatcher(new_config)
            self.records = self._records_for(self.dispatcher)
        self.config = new_config
        added, removed, changed = self._apply_targets()
        self.records.config_reloaded(added, removed, changed)
        self.notifier.ready(self.status_line())

    def _apply_targets(self) -> tuple[list[str], list[str], list[str]]:
        return self.targets.apply(
            effective_targets(self.config),
            self.records.writer,
            self.config.daemon.redact_cmdline,
        )

    def status_line(self) -> str:
        targets, processes, above = self.targets.counts()
        return (
            f"watching {targets} targets ({processes} processes), "
            f"{above} above threshold, {self.dispatcher.records} records emitted"
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

    async def _feed_watchdog(self, period: float) -> None:
        """Ping only while every supervisor and watcher made progress recently.

        A loop that is blocked never gets here; a target task stuck (a /proc read
        that never returns in a worker thread) shows as stale. Either way the
        pings stop and systemd restarts the daemon after WatchdogSec.
        """
        while True:
            stale = self.targets.stale(time.monotonic(), allowance=period)
            if stale:
                self.notifier.status(f"STALLED: no progress on {', '.join(stale)}")
            else:
                self.notifier.watchdog()
            await asyncio.sleep(period)
