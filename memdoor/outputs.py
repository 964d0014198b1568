"""Which sinks a configuration gets, built once and kept across reloads, and what
a change to them cannot apply.

Standard output is the process's own and is opened once: every dispatcher the
daemon builds (one per sinks change on reload) shares the same stdout writer,
so two writer threads never interleave lines on fd 1, and what stdout dropped
or why it failed outlives the reload. The journald sender is kept while its
socket stays the same.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Optional

from memdoor.config import Config
from memdoor.render.ecs import ecs_formatter
from memdoor.sinks.dispatch import Dispatcher, Formatter
from memdoor.sinks.journald import JournaldSender
from memdoor.sinks.line_writer import LineWriter
from memdoor.sinks.stdout import StdoutSink, stdout_is_journal_stream

SinkState = Literal["on", "off", "unavailable"]


@dataclass(frozen=True)
class SinkChoice:
    """One sink as a configuration gets it, and why when it is not on."""

    name: str
    state: SinkState
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "state": self.state, "detail": self.detail}


def choose_sinks(config: Config, stdout: StdoutSink) -> dict[str, SinkChoice]:
    """Under systemd with the native journal sink, stdout would duplicate it."""
    wanted = config.sinks.journald.enabled
    if wanted is False:
        journald = SinkChoice("journald", "off", "enabled = false")
    elif wanted == "auto" and not os.environ.get("JOURNAL_STREAM"):
        journald = SinkChoice("journald", "off", 'enabled = "auto" and not started by systemd')
    else:
        journald = SinkChoice("journald", "on", config.sinks.journald.socket)
    if not config.sinks.stdout.enabled:
        out = SinkChoice("stdout", "off", "enabled = false")
    elif not stdout.available:
        out = SinkChoice("stdout", "unavailable", stdout.missing)
    elif journald.state == "on" and stdout_is_journal_stream():
        out = SinkChoice(
            "stdout", "off", "standard output is the journal stream and the journald sink is on"
        )
    else:
        out = SinkChoice("stdout", "on", "")
    return {"stdout": out, "journald": journald}


def console_formatter(stdout: StdoutSink, environ: Mapping[str, str]) -> Optional[Formatter]:
    """The console view for stdout when a person reads it: asked for with --format
    console, or by default on a terminal; None keeps the configured JSON."""
    wanted = stdout.view == "console" or (stdout.view == "auto" and stdout.is_terminal)
    if not wanted:
        return None
    # Imported only for a person's terminal: a daemon under systemd never renders
    # the view, and its modules (the post-mortem's among them) would stay in its RSS.
    from memdoor.views.console import ConsoleView, wants_colour

    return ConsoleView(wants_colour(stdout.is_terminal, environ)).line


def build_dispatcher(
    config: Config,
    stdout: StdoutSink,
    stderr: Optional[LineWriter],
    previous: Optional[Dispatcher] = None,
) -> Dispatcher:
    """The dispatcher for config's sinks; on reload it takes over previous's totals."""
    chosen = choose_sinks(config, stdout)
    journald: Optional[JournaldSender] = None
    if chosen["journald"].state == "on":
        old = previous.journald if previous is not None else None
        same = old is not None and old.socket_path == config.sinks.journald.socket
        journald = old if same else JournaldSender(config.sinks.journald.socket)
    if previous is not None and previous.journald not in (None, journald):
        previous.journald.close()
    # One formatter for both sinks, so an ECS document is rendered once per record.
    ecs = ecs_formatter(socket.gethostname())
    formatters: dict[str, Formatter] = {
        sink: ecs
        for sink, settings in (("stdout", config.sinks.stdout), ("journald", config.sinks.journald))
        if settings.format == "ecs"
    }
    console = console_formatter(stdout, os.environ)
    if console is not None:
        formatters["stdout"] = console
    dispatcher = Dispatcher(
        stdout if chosen["stdout"].state == "on" else None, journald, formatters, stderr
    )
    if previous is not None:
        dispatcher.follow(previous)
    return dispatcher


def unapplied_sink_keys(
    changed: list[str], config: Config, stdout: StdoutSink
) -> list[dict[str, str]]:
    """Changed sinks.* keys that cannot take effect: the sink is meant to run but
    cannot (no stdout, a stdout that failed for good, "auto" outside systemd)."""
    chosen = choose_sinks(config, stdout)
    not_applied = []
    for key in changed:
        sink = key.split(".")[1] if key.startswith("sinks.") else ""
        if sink not in chosen:
            continue
        choice = chosen[sink]
        reason = choice.detail if choice.state != "on" else ""
        if sink == "stdout" and choice.state == "on" and stdout.error is not None:
            reason = f"standard output failed ({stdout.error}) and does not reopen"
        wanted = getattr(config.sinks, sink).enabled is not False
        if reason and wanted:
            not_applied.append({"key": key, "reason": reason})
    return not_applied
