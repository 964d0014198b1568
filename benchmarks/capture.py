#!/usr/bin/env python3
"""How reliably memdoor catches a fast allocator before the OOM killer ends it.

Polling alone catches a hog only when a tick lands between the threshold
crossing and the kill, and at 1 GB/s that gap is a fraction of a second, so
this runs the real thing: for each allocation rate and trial, a fresh memory
cgroup with a limit, a hog in it that waits for "go" and then touches 1 MiB
blocks at the rate until the kernel kills it, and the real daemon watching it
with its default interval and min_interval: `--settings cgroup` (the default)
keeps the default threshold on a cgroup base, `--settings defaults` writes only
the target and `threshold = 90`, as a new user would, everything else (the base
included) left to its default. Each kill is then judged from the daemon's own
records:

- caught: a full snapshot at or above the threshold (`threshold_crossed` or
  `snapshot` whose cgroup usage_percent >= threshold) was taken before the kill
  (its `taken_at` before the `oom_killed` record's `kill.killed_at`; both are
  truncated to milliseconds, a tie counts as not before);
- reported: an `oom_killed` record names the pid;
- told within 1 s: that record was written at most 1 s after `kill.killed_at`;
- age: the `last_snapshot.age_ms` that record carries.

The effective rate (limit / time from "go" to death) is printed next to the
requested one: near the limit the cgroup's reclaim slows the hog, and at the top
rates it simply runs as fast as this machine touches fresh memory.

Run as root (python with memdoor importable, e.g. the project's venv):

    python benchmarks/capture.py [--rates 100,250,500,1000,2000] [--trials 20]
        [--limit-mb 256] [--settings cgroup|defaults] [--daemon per-rate|per-trial]
        [--details FILE]

Progress goes to stderr, the figures to stdout. --details writes one JSON line
per trial with its judgement and every daemon record about its pid.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import select
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, Callable, Optional

from memdoor import __version__
from memdoor.config import DaemonConfig
from memdoor.lab.daemon_process import DaemonProcess, NotSeenInTime, write_config
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.lab.unavailable import LabUnavailable
from memdoor.lab.workload import MIB

Record = dict[str, Any]
# How one trial gets a daemon watching the hog's pid: a context that yields it.
Attach = Callable[[int], contextlib.AbstractContextManager[DaemonProcess]]

END_EVENTS = ("oom_killed", "target_gone")
ABOVE_EVENTS = ("threshold_crossed", "snapshot")


class BenchmarkError(Exception):
    """The setup failed in a way that makes further trials meaningless."""


@dataclass
class Trial:
    rate: float
    seconds_to_death: float
    wakeups: list[str]
    end_event: Optional[str]
    caught: bool
    age_ms: Optional[int]
    # The last snapshot oom_killed carried was read whole: no problems, a cgroup figure.
    # A snapshot whose reads overlapped the exit comes back torn.
    last_snapshot_intact: Optional[bool]
    kill_sources: list[str]
    # "kmsg" when the oom_killed record's kill.killed_at was known, else "reaped":
    # the benchmark's own wall time when it saw the hog dead (a later bound).
    kill_time_from: str
    # Milliseconds from the first above-threshold snapshot's taken_at to the kill;
    # negative when it was taken after the kill; None when there was none.
    first_above_lead_ms: Optional[int]
    # Milliseconds from the kill to the oom_killed record's timestamp; None without one.
    told_after_ms: Optional[int]


def parse_time(text: str) -> float:
    """Epoch seconds of a record's RFC 3339 time (2026-11-24T19:30:18.905Z)."""
    moment = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def _usage_percent(snapshot: Record) -> Optional[float]:
    """The cgroup figure of a record's snapshot; None when its cgroup could not be read."""
    percent: Optional[float] = (snapshot.get("cgroup") or {}).get("usage_percent")
    return percent


def judge(
    rate: float, seconds_to_death: float, reaped_at: float, records: Sequence[Record]
) -> Trial:
    """One kill judged from the daemon's records about the hog's pid, in emission order."""
    found = next(r for r in records if r["event"] == "target_found")
    end = next((r for r in records if r["event"] in END_EVENTS), None)
    killed_at, source = reaped_at, "reaped"
    age_ms = intact = told_after_ms = None
    kill_sources = []
    if end is not None and end["event"] == "oom_killed":
        kill_sources = end["kill"]["sources"]
        if end["kill"]["killed_at"] is not None:
            killed_at, source = parse_time(end["kill"]["killed_at"]), "kmsg"
        told_after_ms = round((parse_time(end["timestamp"]) - killed_at) * 1000)
        last = end["last_snapshot"]
        if last is not None:
            age_ms = last["age_ms"]
            intact = not last.get("problems") and _usage_percent(last) is not None
    above = [
        parse_time(r["taken_at"])
        for r in records
        if r["event"] in ABOVE_EVENTS and (_usage_percent(r) or 0) >= r["threshold_percent"]
    ]
    return Trial(
        rate=rate,
        seconds_to_death=seconds_to_death,
        wakeups=list(found.get("wakeups", [])),
        end_event=None if end is None else end["event"],
        caught=any(taken < killed_at for taken in above),
        age_ms=age_ms,
        last_snapshot_intact=intact,
        kill_sources=kill_sources,
        kill_time_from=source,
        first_above_lead_ms=round((killed_at - above[0]) * 1000) if above else None,
        told_after_ms=told_after_ms,
    )


# What the target sets besides its locator, per --settings.
SETTINGS = {
    "cgroup": 'threshold_base = "cgroup"\n',
    "defaults": "threshold = 90\n",
}


def target_config(locator: str, settings: str) -> str:
    """Defaults everywhere except the target and what --settings names."""
    return f'[[target]]\nname = "hog"\n{locator}\n{SETTINGS[settings]}'


def wait_record(
    daemon: DaemonProcess, predicate: Callable[[Record], bool], timeout: float
) -> Optional[Record]:
    """DaemonProcess.wait_record, None when nothing came in time; a daemon that died is an error."""
    try:
        return daemon.wait_record(predicate, timeout)
    except NotSeenInTime:
        if daemon.proc.poll() is not None:
            daemon.stop()
            raise BenchmarkError(
                f"the daemon exited with {daemon.proc.returncode}: {daemon.stderr}"
            ) from None
        return None


def wait_for_death(pid: int, timeout: float) -> Optional[float]:
    """time.monotonic() when the process died, or None; a pidfd is readable from that moment,
    where Popen.wait(timeout) would only notice on its next poll, up to 50 ms late."""
    pidfd = os.pidfd_open(pid)
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    return time.monotonic() if readable else None


@contextlib.contextmanager
def running_daemon(config: Path) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(config)
    try:
        yield daemon
    finally:
        code = daemon.stop()
        if code != 0:
            print(f"daemon exited with {code}: {daemon.stderr}", file=sys.stderr)


def run_trial(
    rate: float, limit_mb: int, interval: float, attach: Attach
) -> tuple[Trial, list[Record]]:
    """One hog in a fresh cgroup, from adoption by the daemon to its oom_killed record."""
    with live_memory_cgroup(limit_mb * MIB) as cgroup:
        hog = cgroup.spawn(
            "--grow-after-stdin-line", "--grow-until-killed", "--grow-mb-per-s", f"{rate:g}"
        )
        assert hog.proc.stdin is not None
        with attach(hog.pid) as daemon:

            def about_hog(record: Record) -> bool:
                return record.get("pid") == hog.pid and record.get("target") == "hog"

            # A pidfile is resolved once per interval; the daemon's start may take a second.
            found = wait_record(
                daemon,
                lambda r: about_hog(r) and r["event"] == "target_found",
                2 * interval + 10,
            )
            if found is None:
                raise BenchmarkError(f"the daemon did not adopt the hog (pid {hog.pid})")
            hog.proc.stdin.write(b"go\n")
            hog.proc.stdin.flush()
            went = time.monotonic()
            # Generous: the slowest rate and a cgroup that reclaims hard near its limit.
            died = wait_for_death(hog.pid, 60 + 10 * limit_mb / rate)
            if died is None:
                raise BenchmarkError(f"the hog (pid {hog.pid}) was not killed")
            reaped_at = time.time()
            status = hog.proc.wait()
            if status != -signal.SIGKILL:
                raise BenchmarkError(
                    f"the hog ended with status {status}, not SIGKILL: {hog.stderr_text()}"
                )
            # A watcher far below its threshold sleeps up to twice its interval. The
            # cgroup stays until the record is out: its OOM counter is evidence.
            wait_record(
                daemon, lambda r: about_hog(r) and r["event"] in END_EVENTS, 2 * interval + 10
            )
            records = [r for r in list(daemon.records) if about_hog(r)]
    return judge(rate, died - went, reaped_at, records), records


def share(count: int, total: int) -> str:
    return f"{count}/{total} ({100 * count / total:.0f}%)"


def spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.0f} ({min(values):.0f} to {max(values):.0f})"


def wakeup_summary(trials: Sequence[Trial]) -> str:
    kinds = Counter("+".join(t.wakeups) or "none" for t in trials)
    if len(kinds) == 1:
        return next(iter(kinds))
    return ", ".join(f"{kind} x{count}" for kind, count in kinds.most_common())


def print_table(trials_by_rate: dict[float, list[Trial]], limit_mb: int) -> None:
    headers = (
        "requested MiB/s",
        "achieved MiB/s median (min to max)",
        "snapshot above threshold before kill",
        "oom_killed record",
        "oom_killed within 1 s",
        "last_snapshot.age_ms median / max",
        "wakeups (target_found)",
    )
    rows = []
    for rate, trials in trials_by_rate.items():
        ages = [t.age_ms for t in trials if t.age_ms is not None]
        rows.append(
            (
                f"{rate:g}",
                spread([limit_mb / t.seconds_to_death for t in trials]),
                share(sum(t.caught for t in trials), len(trials)),
                share(sum(t.end_event == "oom_killed" for t in trials), len(trials)),
                share(
                    sum(t.told_after_ms is not None and t.told_after_ms <= 1000 for t in trials),
                    len(trials),
                ),
                f"{statistics.median(ages):.0f} / {max(ages)}" if ages else "-",
                wakeup_summary(trials),
            )
        )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for line in (headers, tuple("-" * w for w in widths), *rows):
        print(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())


def print_notes(trials_by_rate: dict[float, list[Trial]]) -> None:
    """What the table's shares rest on, so a reader can tell a miss from a measuring gap."""
    everything = [t for trials in trials_by_rate.values() for t in trials]
    reaped = sum(t.kill_time_from == "reaped" for t in everything)
    print(
        f"kill time: kmsg killed_at for {len(everything) - reaped} kills, the benchmark's own "
        f"sight of the dead hog (a later bound) for {reaped}"
    )
    ends = Counter(t.end_event or "no end record" for t in everything)
    print("end records: " + ", ".join(f"{e} {n}" for e, n in sorted(ends.items())))
    sources = Counter("+".join(t.kill_sources) for t in everything if t.end_event == "oom_killed")
    print("oom_killed kill.sources: " + ", ".join(f"{s} {n}" for s, n in sorted(sources.items())))
    torn = sum(t.last_snapshot_intact is False for t in everything)
    print(f"oom_killed last_snapshot torn (problems, or no cgroup figure): {torn}")
    for rate, trials in trials_by_rate.items():
        leads = [t.first_above_lead_ms for t in trials if t.first_above_lead_ms is not None]
        missing = sum(t.first_above_lead_ms is None for t in trials)
        print(
            f"{rate:g} MiB/s: first above-threshold snapshot taken this many ms before the kill: "
            f"{spread(leads)}; none at all in {missing} of {len(trials)} kills"
        )


def parse_rates(text: str) -> list[float]:
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text}") from None
    if not rates or any(rate <= 0 for rate in rates):
        raise argparse.ArgumentTypeError("rates must be positive")
    return rates


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--rates",
        type=parse_rates,
        default=[100.0, 250.0, 500.0, 1000.0, 2000.0],
        help="requested allocation rates in MiB/s, comma-separated",
    )
    parser.add_argument("--trials", type=int, default=20, help="kills per rate")
    parser.add_argument("--limit-mb", type=int, default=256, help="the cgroup's memory limit")
    parser.add_argument(
        "--settings",
        choices=tuple(SETTINGS),
        default="cgroup",
        help="cgroup: the default threshold on a cgroup base; defaults: only the target "
        "and threshold = 90, everything else as a new user leaves it",
    )
    parser.add_argument(
        "--daemon",
        choices=("per-rate", "per-trial"),
        default="per-rate",
        help="one daemon for all trials of a rate (pidfile target, the default), "
        "or one per trial (pid target)",
    )
    parser.add_argument(
        "--details", type=Path, help="write each trial and its records as JSON lines"
    )
    args = parser.parse_args(argv)
    if args.trials < 1 or args.limit_mb < 16:
        parser.error("--trials must be at least 1 and --limit-mb at least 16")
    return args


def _interrupt(signum: int, frame: Optional[FrameType]) -> None:
    """SIGTERM unwinds like Ctrl-C, so every cgroup and process is still cleaned up."""
    raise KeyboardInterrupt


@contextlib.contextmanager
def one_daemon_per_rate(directory: Path, settings: str) -> Iterator[Attach]:
    """One daemon following a pidfile: each hog is adopted like a restarted service's new pid."""
    pidfile = directory / "hog.pid"
    text = target_config(f'pidfile = "{pidfile}"', settings)
    config = write_config(directory / "rate.toml", text)
    with running_daemon(config) as daemon:

        def attach(pid: int) -> contextlib.AbstractContextManager[DaemonProcess]:
            pidfile.write_text(f"{pid}\n")
            return contextlib.nullcontext(daemon)

        yield attach


@contextlib.contextmanager
def one_daemon_per_trial(directory: Path, settings: str) -> Iterator[Attach]:
    """A fresh daemon for each hog, watching its pid, started once the hog exists."""

    def attach(pid: int) -> contextlib.AbstractContextManager[DaemonProcess]:
        config = write_config(directory / "trial.toml", target_config(f"pid = {pid}", settings))
        return running_daemon(config)

    yield attach


DAEMON_MODES = {"per-rate": one_daemon_per_rate, "per-trial": one_daemon_per_trial}


def run(args: argparse.Namespace, details: Optional[IO[str]]) -> dict[float, list[Trial]]:
    interval = DaemonConfig().interval
    trials_by_rate: dict[float, list[Trial]] = {}
    # Under /run, root's own: memdoor reads a pidfile only where no other user could
    # have written it (docs/configuration.md, "Pidfiles"); a directory under /tmp is refused.
    with tempfile.TemporaryDirectory(prefix="memdoor-capture-", dir="/run") as tmp:
        for rate in args.rates:
            with DAEMON_MODES[args.daemon](Path(tmp), args.settings) as attach:
                trials = trials_by_rate.setdefault(rate, [])
                for number in range(1, args.trials + 1):
                    trial, records = run_trial(rate, args.limit_mb, interval, attach)
                    trials.append(trial)
                    print(
                        f"{rate:g} MiB/s trial {number}/{args.trials}: dead after "
                        f"{trial.seconds_to_death:.2f} s, end {trial.end_event}, "
                        f"caught {trial.caught}, age {trial.age_ms} ms",
                        file=sys.stderr,
                    )
                    if details is not None:
                        details.write(json.dumps({**asdict(trial), "records": records}) + "\n")
                        details.flush()
    return trials_by_rate


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("capture.py needs root: it creates memory cgroups", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    defaults = DaemonConfig()
    with contextlib.ExitStack() as stack:
        details = None if args.details is None else stack.enter_context(args.details.open("w"))
        try:
            trials_by_rate = run(args, details)
        except LabUnavailable as exc:
            print(f"cannot run here: {exc}", file=sys.stderr)
            return 1
        except BenchmarkError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted; cgroups removed and processes reaped", file=sys.stderr)
            return 130
    print(
        f"memdoor {__version__}, kernel {platform.release()}, {os.cpu_count()} CPUs; "
        f"{args.limit_mb} MiB memory cgroup, {args.trials} kills per rate, daemon {args.daemon}"
    )
    print(
        f"target settings: {SETTINGS[args.settings].strip()}; daemon defaults: threshold "
        f"{defaults.threshold}%, base {defaults.threshold_base}, interval "
        f"{defaults.interval:g} s, min_interval {defaults.min_interval:g} s"
    )
    print_table(trials_by_rate, args.limit_mb)
    print_notes(trials_by_rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
