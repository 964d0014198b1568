"""What the original memdoor command line does: watch one pid, print a report each interval."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Optional, TextIO

from memdoor.cli.output import discard_unwritten
from memdoor.collect.cgroup import find_cgroup_mounts
from memdoor.collect.identity import ProcessTask
from memdoor.collect.liveness import Verdict, check_process
from memdoor.collect.memory import read_meminfo, read_rss_kb
from memdoor.collect.reading import Unreadable
from memdoor.process_text import from_os
from memdoor.render.seed_text import below_threshold_report, full_report, report_time
from memdoor.render.snapshot_dict import snapshot_dict
from memdoor.snapshot import Snapshot, take_snapshot
from memdoor.vocabulary import percent_of, rfc3339

EXIT_MISMATCH = 1
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class SeedWatch:
    """One watched pid; remembers its start time so a reused pid is caught."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.pid: int = args.pid
        # In the form /proc/PID/exe is read in (memdoor.process_text), so a path
        # that is not UTF-8 still matches, and prints as valid text.
        self.exe: str = from_os(args.exename)
        self.threshold: int = args.memory_pressure_threshold
        self.json = args.format == "json"
        self.sort_by_rss = args.sort == "rss"
        self.out = out
        self.start_ticks: Optional[int] = None
        layout = find_cgroup_mounts()
        self.cgroups = None if isinstance(layout, Unreadable) else layout

    def cycle(self, now: float) -> Optional[int]:
        """Print one report; return an exit code when watching must end."""
        liveness = check_process(self.pid, self.exe, self.start_ticks)
        if liveness.task is None:
            if not self.json:
                self.out.write(report_time(now) + "\n")
            message = f"ERROR: PID {self.pid} does not match the executable name {self.exe}"
            if liveness.verdict is Verdict.UNVERIFIABLE:
                message = f"ERROR: cannot verify PID {self.pid} runs {self.exe}: {liveness.detail}"
            print(message, file=sys.stderr if self.json else self.out)
            if self.json:
                self._json(
                    {
                        "report_time": rfc3339(now),
                        "pid": self.pid,
                        "exe": self.exe,
                        "error": liveness.verdict.value,
                        "detail": liveness.detail,
                    }
                )
            return EXIT_MISMATCH
        self.start_ticks = liveness.task.stat.start_ticks
        percent = self._usage_percent(liveness.task)
        if percent is None or percent < self.threshold:
            self._below(now, percent)
            return None
        snapshot = take_snapshot(
            self.pid, expected_start_ticks=self.start_ticks, cgroups=self.cgroups
        )
        self._above(snapshot, percent)
        return None

    def _usage_percent(self, task: ProcessTask) -> Optional[float]:
        """Only what the threshold needs: statm (through task) and meminfo, two tiny reads."""
        rss = read_rss_kb(task.tid, task.proc)
        meminfo = read_meminfo()
        if isinstance(rss, Unreadable) or isinstance(meminfo, Unreadable):
            return None
        return percent_of(rss, meminfo.total_kb)

    def _below(self, now: float, percent: Optional[float]) -> None:
        if self.json:
            self._json(
                {
                    "report_time": rfc3339(now),
                    "pid": self.pid,
                    "exe": self.exe,
                    "threshold_percent": self.threshold,
                    "above_threshold": False,
                    "usage_percent": None if percent is None else round(percent, 2),
                }
            )
        else:
            self.out.write(below_threshold_report(now, self.pid, self.exe))

    def _above(self, snapshot: Snapshot, percent: float) -> None:
        if self.json:
            self._json(
                {
                    "report_time": rfc3339(snapshot.taken_at),
                    "pid": self.pid,
                    "exe": self.exe,
                    "threshold_percent": self.threshold,
                    "above_threshold": True,
                    "usage_percent": round(percent, 2),
                    **snapshot_dict(snapshot),
                }
            )
        else:
            self.out.write(full_report(snapshot, self.exe, self.sort_by_rss))

    def _json(self, record: dict[str, object]) -> None:
        self.out.write(json.dumps(record, separators=(",", ":")) + "\n")


def run_seed(args: argparse.Namespace) -> int:
    """Report on args.pid every args.interval seconds, to stdout, until told to stop."""
    out = sys.stdout
    watch = SeedWatch(args, out)
    # Signals are blocked and only taken while sleeping, so a report is never
    # cut in half and SIGINT/SIGTERM end the loop without a traceback.
    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        cycle = 0
        while True:
            code = watch.cycle(time.time())
            out.flush()
            if code is not None:
                return code
            cycle += 1
            if args.count is not None and cycle >= args.count:
                return 0
            if signal.sigtimedwait(STOP_SIGNALS, args.interval) is not None:
                return 0
    except BrokenPipeError:
        # A reader such as `head` went away: stop quietly, as cat does.
        discard_unwritten(out)
        return 0
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
