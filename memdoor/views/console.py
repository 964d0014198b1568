"""One short, aligned line per record, for a terminal: the console view.

    05:05:08.027 [warning] hog           8951 sample            cgroup 57% >= 50%, ...

time (local, milliseconds), level, target, pid, event, and the key figures;
records about memory get their figures composed here (the measured base against
the threshold, RSS, the cgroup's usage of its limit, how fast it grows and when
it would reach its limit), the others keep their
MESSAGE without the target and pid the columns already show.

structlog's ConsoleRenderer draws the frame: the dimmed time, the level padded
and coloured by severity, the rest bright, or all of it plain. Its key=value
tail is not used: it sorts keys alphabetically and does not align them, so the
columns are laid out here and handed over as the event text. Every string from
the record is made printable first (memdoor.views.text.printable).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from structlog.dev import ConsoleRenderer

from memdoor.events import Event
from memdoor.messages import against_threshold, human_kb
from memdoor.views.postmortem import killed_by, rate
from memdoor.views.text import clock, duration, number, parse_time, printable, section

TARGET_WIDTH = 12
PID_WIDTH = 7
EVENT_WIDTH = max(len(event.value) for event in Event)

# structlog's choices for its own levels, plus syslog's notice between info and warning.
_LEVEL_STYLES = {
    "info": "\x1b[32m",
    "notice": "\x1b[36m",
    "warning": "\x1b[33m",
    "error": "\x1b[31m",
}
_MEASURED = (Event.THRESHOLD_CROSSED, Event.SNAPSHOT, Event.SAMPLE, Event.BACK_BELOW)


def wants_colour(is_terminal: bool, environ: Mapping[str, str]) -> bool:
    """Colour on a terminal that takes it, unless NO_COLOR is set (https://no-color.org)."""
    if environ.get("NO_COLOR", ""):
        return False
    return is_terminal and environ.get("TERM", "") != "dumb"


def _kb(value: Any) -> Optional[str]:
    figure = number(value)
    return None if figure is None else human_kb(int(figure))


def memory_figures(record: Mapping[str, Any]) -> str:
    """'cgroup 57% >= 50%, RSS 152.7 MiB, cgroup 146.6 MiB of 256.0 MiB'."""
    memory, cgroup = section(record, "memory"), section(record, "cgroup")
    base = record.get("measured_base")
    percent = number(record.get("usage_percent"))
    if percent is None:
        percent = number((cgroup if base == "cgroup" else memory).get("usage_percent"))
    threshold = number(record.get("threshold_percent"))
    parts = []
    if percent is not None and threshold is not None:
        parts.append(f"{printable(base or 'usage')} {against_threshold(percent, int(threshold))}")
    rss = _kb(memory.get("rss_kb", record.get("rss_kb")))
    if rss is not None:
        parts.append(f"RSS {rss}")
    usage = _kb(cgroup.get("limit_usage_kb", cgroup.get("usage_kb")))
    limit = _kb(cgroup.get("limit_kb"))
    if usage is not None:
        parts.append(f"cgroup {usage}" + ("" if limit is None else f" of {limit}"))
    # A sample's percent is the tick's; its memory and cgroup are the kept snapshot's.
    age = number(section(record, "counts").get("age_ms"))
    if age is not None and len(parts) > 1:
        parts[1] = f"snapshot {duration(age / 1000)} old: {parts[1]}"
    return ", ".join(parts + growth_figures(record))


def growth_figures(record: Mapping[str, Any]) -> list[str]:
    """['+37.2 MiB/s over 4.0 s', 'limit in 2.6 s'] from the record's growth, when it moved."""
    growth = section(record, "growth")
    per_s, span = number(growth.get("last_minute_kb_per_s")), number(growth.get("last_minute_s"))
    if per_s is None or span is None or round(per_s) == 0:
        return []
    figures = [f"{rate(per_s)} over {duration(span)}"]
    left = number(growth.get("seconds_to_limit"))
    if left is not None:
        figures.append(f"limit in {duration(left)}")
    return figures


def kill_figures(record: Mapping[str, Any]) -> str:
    """'python killed by the OOM killer (CONSTRAINT_MEMCG), RSS 261.9 MiB, limit ...'."""
    kill, last = section(record, "kill"), section(record, "last_snapshot")
    name = kill.get("name") or section(record, "process").get("name") or "?"
    text = f"{printable(name)} killed by {killed_by(kill)}"
    if kill.get("constraint"):
        text += f" ({printable(kill['constraint'])})"
    resident = [number(kill.get(k)) for k in ("anon_rss_kb", "file_rss_kb", "shmem_rss_kb")]
    if all(value is not None for value in resident):
        text += f", RSS {human_kb(int(sum(v for v in resident if v is not None)))}"
    limit = _kb(section(last, "cgroup").get("limit_kb"))
    if limit is not None:
        text += f", limit {limit}"
    age = number(last.get("age_ms"))
    text += ", no snapshot" if not last else f", last snapshot {duration((age or 0) / 1000)} old"
    return text


def _without_who(message: str, target: Any, pid: Any) -> str:
    """The MESSAGE without the leading 'target pid N' or 'target:' the columns show."""
    for prefix in (f"{target} pid {pid}: ", f"{target} pid {pid} ", f"{target}: "):
        if target is not None and message.startswith(prefix):
            return message[len(prefix) :]
    return message


def what_happened(record: Mapping[str, Any]) -> str:
    """The line's last column: the key figures, or the MESSAGE."""
    event = record.get("event")
    figures = memory_figures(record) if event in _MEASURED else ""
    if figures:
        return figures
    if event == Event.OOM_KILLED:
        return kill_figures(record)
    message = _without_who(str(record.get("message", "")), record.get("target"), record.get("pid"))
    return printable(message)


class ConsoleView:
    """Renders record dicts as console lines, with or without ANSI colour."""

    def __init__(self, colors: bool) -> None:
        # Without colour the styles still pad the level: the same names, no codes.
        styles = _LEVEL_STYLES if colors else dict.fromkeys(_LEVEL_STYLES, "")
        self._renderer = ConsoleRenderer(colors=colors, level_styles=styles)

    def line(self, record: Mapping[str, Any]) -> str:
        """One line, no newline; a record that is not one of memdoor's still gets a line."""
        when = parse_time(record.get("timestamp"))
        target, pid = record.get("target"), record.get("pid")
        columns = (
            f"{printable('-' if target is None else target):<{TARGET_WIDTH}} "
            f"{printable('-' if pid is None else pid):>{PID_WIDTH}} "
            f"{printable(record.get('event', '?')):<{EVENT_WIDTH}} {what_happened(record)}"
        )
        level = record.get("level")
        rendered: str = self._renderer(
            None,
            "info",
            {
                "timestamp": "??:??:??.???" if when is None else clock(when),
                "level": level if level in _LEVEL_STYLES else printable(level),
                "event": columns.rstrip(),
            },
        )
        return rendered
