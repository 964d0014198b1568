"""The command line's only two uses of the daemon's modules (records, sinks, daemon).

They are kept here, one small function each, so that a change in those modules
has one place to be followed in the command line.
"""

from __future__ import annotations

import asyncio
import sys

from memdoor.config import ConfigError, RunningConfig
from memdoor.daemon import Daemon
from memdoor.emitter import DaemonRecords
from memdoor.records import RecordLog
from memdoor.sinks.dispatch import Dispatcher
from memdoor.sinks.stdout import StdoutSink, StdoutView


def report_config_error(exc: ConfigError) -> None:
    """stderr for the operator, one JSON record for whatever collects the output."""
    print(str(exc), file=sys.stderr, flush=True)
    DaemonRecords(RecordLog(Dispatcher(StdoutSink(), None))).config_invalid(exc, "not started")


def run_daemon(path: str, config: RunningConfig, view: StdoutView = "auto") -> int:
    """The daemon in the foreground until it stops; its exit code. view: --format."""

    async def serve() -> int:
        # Built inside the loop: on Python 3.9 the daemon's asyncio.Events bind
        # to the loop that is current when they are created.
        return await Daemon(path, config, stdout_view=view).run()

    return asyncio.run(serve())
