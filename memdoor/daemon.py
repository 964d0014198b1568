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
import time
from typing import Any, Optional

from memdoor.collect.cgroup import CgroupLayout, find_cgroup_mounts
from memdoor.collect.reading import Unreadable
from memdoor.config import Config, ConfigError, ResolvedTarget, effective_targets, load_config
from memdoor.nearby import NEARBY_PERIOD, CgroupGroup, NeighbourKillCounter, WatchedProcess
from memdoor.notify import Notifier, watchdog_interval
from memdoor.oom_evidence import KernelLog, kill_dict
from memdoor.pressure import PressureHub
from memdoor.procfs.kmsg import OomKillReport
from memdoor.records import build_logger, log_config_invalid
from memdoor.sinks.dispatch import Dispatcher
from memdoor.sinks.journald import JournaldSender
from memdoor.sinks.stdout import StdoutSink, stdout_is_journal_stream
from memdoor.supervisor import TargetSupervisor
from memdoor.system_memory import MemTotal
from memdoor.watcher import Services, TargetState

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
    return Dispatcher(
        StdoutSink() if stdout_wanted else None,
        journald,
        {"stdout": config.sinks.stdout.format, "journald": config.sinks.journald.format},
    )


class Daemon:
    def __init__(self, config_path: Optional[str], config: Config, proc: str = "/proc") -> None:
        self.config_path = config_path
        self.config = config
        layout = find_cgroup_mounts(proc)
        self.cgroup_problem = layout if isinstance(layout, Unreadable) else None
        self.services = Services(
            mem_total=MemTotal(proc),
            cgroups=layout if isinstance(layout, CgroupLayout) else None,
            kernel_log=KernelLog(),
            pressure=PressureHub(),
            proc=proc,
            neighbour_kills=NeighbourKillCounter(proc),
        )
        self.dispatcher = build_dispatcher(config)
        self.log = self._logger_for(self.dispatcher)
        self.notifier = Notifier(self._notify_failed)
        self.supervisors: dict[
            str, tuple[ResolvedTarget, TargetSupervisor, asyncio.Task[None]]
        ] = {}
        self._stop = asyncio.Event()
        self._reload_requested = asyncio.Event()

    def _logger_for(self, dispatcher: Dispatcher) -> Any:
        log = build_logger(dispatcher)
        dispatcher.on_failure = lambda sink, detail: log.error(
            "sink_failed", message=f"sink {sink} failed: {detail}", sink=sink, detail=detail
        )
        return log

    def _notify_failed(self, detail: str) -> None:
        self.log.error("notify_failed", message=detail, detail=detail)

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
        self.log.info(
            "daemon_started",
            message=f"memdoor started: {len(self.config.targets)} targets, "
            f"sinks {', '.join(self.dispatcher.sink_names) or 'none'}",
            config=self.config_path,
            daemon_pid=os.getpid(),
            evidence=self._evidence_sources(),
        )
        self._apply_targets(effective_targets(self.config))
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
            self.log.info("daemon_stopping", message="memdoor stopping")
            for task in helpers:
                task.cancel()
            await self._stop_targets(list(self.supervisors))
            await asyncio.gather(*helpers, return_exceptions=True)
            kernel_log.stop(loop)
            if self.services.pressure is not None:
                self.services.pressure.close()
        return 0

    def _evidence_sources(self) -> dict[str, Any]:
        """Which OOM evidence and cgroup figures this host lets us read, said once at start."""
        layout = self.services.cgroups
        unavailable = self.services.kernel_log.unavailable
        memory = None
        if layout is not None and layout.v2_memory and layout.v2 is not None:
            memory = f"cgroup v2 at {layout.v2.mount_point}"
        elif layout is not None and layout.v1_memory is not None:
            memory = f"cgroup v1 at {layout.v1_memory.mount_point}"
        return {
            "kmsg": "readable"
            if unavailable is None
            else f"{unavailable.reason}: {unavailable.detail}",
            "memory_cgroup": memory
            or (self.cgroup_problem.detail if self.cgroup_problem else "no memory controller"),
        }

    def _oom_kill_seen(self, report: OomKillReport) -> None:
        """A kill in the kernel log: tell each target whose processes share the victim's cgroup.

        The victim itself, when watched, gets its oom_killed record from its own
        watcher, with the last snapshot; this lighter record is for the others.
        """
        if report.task_memcg is None:
            return
        for name, (_target, supervisor, _task) in self.supervisors.items():
            if supervisor.watches(report.pid):
                continue
            neighbours = supervisor.watchers_in_cgroup(report.task_memcg)
            if neighbours:
                neighbours[0].log_event(
                    "error",
                    "oom_kill_nearby",
                    f"{name}: the OOM killer killed pid {report.pid} ({report.name}) in the same "
                    f"cgroup {report.task_memcg}",
                    kill=kill_dict(report, None, None, None),
                    victim_pid=report.pid,
                    kills=1,
                )

    async def _count_neighbour_kills(self) -> None:
        """Without the kernel log, neighbours' kills come from the cgroups' OOM counters."""
        while True:
            await asyncio.sleep(NEARBY_PERIOD)
            self.check_neighbour_kills()

    def check_neighbour_kills(self) -> None:
        groups: dict[str, CgroupGroup] = {}
        for _target, supervisor, _task in self.supervisors.values():
            for watcher in supervisor.live_watchers():
                if watcher.cgroup is not None:
                    cgroup = watcher.cgroup.cgroup
                    group = groups.setdefault(cgroup.directory, CgroupGroup(cgroup))
                    group.processes.append(
                        WatchedProcess(watcher.pid, watcher.identity.start_ticks)
                    )
        for found in self.services.neighbour_kills.check(groups.values()):
            for name, (_target, supervisor, _task) in self.supervisors.items():
                neighbours = supervisor.watchers_in_cgroup(found.cgroup.path)
                if neighbours:
                    neighbours[0].log_event(
                        "error",
                        "oom_kill_nearby",
                        f"{name}: the OOM killer killed {found.kills} process(es) memdoor does "
                        f"not watch in the same cgroup {found.cgroup.path} (told by its OOM "
                        "counter; the kernel log, which would name them, is not readable)",
                        kill=kill_dict(None, found.before, found.after, found.cgroup.directory),
                        victim_pid=None,
                        kills=found.kills,
                    )

    def reload(self) -> None:
        """Apply a new config; an invalid one is reported and the running one stays."""
        self.notifier.reloading()
        try:
            new_config = load_config(self.config_path) if self.config_path else self.config
        except ConfigError as exc:
            log_config_invalid(self.log, exc, "reload rejected, the running configuration stays")
            self.notifier.ready(self.status_line())
            return
        if new_config.sinks != self.config.sinks:
            if self.dispatcher.journald is not None:
                self.dispatcher.journald.close()
            self.dispatcher = build_dispatcher(new_config)
            self.log = self._logger_for(self.dispatcher)
            for _target, supervisor, _task in self.supervisors.values():
                supervisor.state.log = self.log
        self.config = new_config
        added, removed, changed = self._apply_targets(effective_targets(new_config))
        self.log.info(
            "config_reloaded",
            message=f"configuration reloaded: {len(added)} added, {len(removed)} removed, "
            f"{len(changed)} changed",
            added=added,
            removed=removed,
            changed=changed,
        )
        self.notifier.ready(self.status_line())

    def _apply_targets(
        self, targets: list[ResolvedTarget]
    ) -> tuple[list[str], list[str], list[str]]:
        wanted = {t.name: t for t in targets}
        removed = [name for name in self.supervisors if name not in wanted]
        changed = [
            n for n, t in wanted.items() if n in self.supervisors and self.supervisors[n][0] != t
        ]
        added = [name for name in wanted if name not in self.supervisors]
        for name in removed + changed:
            _target, _supervisor, task = self.supervisors.pop(name)
            task.cancel()
        for name in added + changed:
            self._start(wanted[name])
        return added, removed, changed

    def _start(self, target: ResolvedTarget) -> None:
        state = TargetState(
            target=target,
            log=self.log,
            services=self.services,
            redact_cmdline=self.config.daemon.redact_cmdline,
        )
        supervisor = TargetSupervisor(state)
        task = asyncio.get_running_loop().create_task(supervisor.run())
        self.supervisors[target.name] = (target, supervisor, task)

    async def _stop_targets(self, names: list[str]) -> None:
        tasks = [self.supervisors.pop(name)[2] for name in names]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def status_line(self) -> str:
        processes = sum(len(s.watchers) for _t, s, _task in self.supervisors.values())
        above = sum(len(s.state.above) for _t, s, _task in self.supervisors.values())
        return (
            f"watching {len(self.supervisors)} targets ({processes} processes), "
            f"{above} above threshold, {self.dispatcher.records} records emitted"
        )

    async def _report_status(self) -> None:
        last = ""
        while True:
            line = self.status_line()
            if line != last:
                self.notifier.status(line)
                last = line
            await asyncio.sleep(STATUS_PERIOD)

    async def _feed_watchdog(self, period: float) -> None:
        """Ping only while every supervisor and watcher made progress recently.

        A loop that is blocked never gets here; a target task stuck (a /proc read
        that never returns in a worker thread) shows as stale. Either way the
        pings stop and systemd restarts the daemon after WatchdogSec.
        """
        while True:
            now = time.monotonic()
            stale = [
                name
                for name, (_t, supervisor, _task) in self.supervisors.items()
                if supervisor.stale(now, allowance=period)
            ]
            if stale:
                self.notifier.status(f"STALLED: no progress on {', '.join(stale)}")
            else:
                self.notifier.watchdog()
            await asyncio.sleep(period)
