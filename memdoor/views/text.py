"""The small formats every view shares: safe text, clock times, sizes, durations.

Records carry text a watched process chose (its name, its mapped file names,
its cgroup path): a name holding an escape sequence must not recolour or move
the cursor of the terminal that shows it, and a newline must not forge a line.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any, Optional

# C0 and C1 controls, DEL, and the bidirectional overrides and isolates that
# make text display in another order than it is stored.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any) -> str:
    """str(value) with every control character written as a visible escape (\\x1b)."""
    return _UNSAFE.sub(_escape, str(value))


def parse_time(text: Any) -> Optional[float]:
    """A record's RFC 3339 time ('2026-11-24T19:30:18.905Z') as epoch seconds, or None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def clock(epoch: float) -> str:
    """HH:MM:SS.mmm in local time: what a person compares with their own clock."""
    moment = datetime.datetime.fromtimestamp(epoch)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def date_and_clock(epoch: float) -> str:
    """YYYY-MM-DD HH:MM:SS.mmm in local time, for a moment that may be days ago."""
    moment = datetime.datetime.fromtimestamp(epoch)
    return moment.strftime("%Y-%m-%d ") + clock(epoch)


def duration(seconds: float) -> str:
    """'340 ms', '4.2 s', '3 min 20 s', '2 h 5 min', '3 d 4 h': two units at most."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        big, unit, rest, smaller = whole // 60, "min", whole % 60, "s"
    elif whole < 86400:
        big, unit, rest, smaller = whole // 3600, "h", whole % 3600 // 60, "min"
    else:
        big, unit, rest, smaller = whole // 86400, "d", whole % 86400 // 3600, "h"
    return f"{big} {unit}" + (f" {rest} {smaller}" if rest else "")


def number(value: Any) -> Optional[float]:
    """A record's number, or None for null, text, booleans and nan."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)


def section(record: Any, key: str) -> dict[str, Any]:
    """record[key] when it is an object, else an empty one: a view shows what is there."""
    if isinstance(record, dict):
        value = record.get(key)
        if isinstance(value, dict):
            return value
    return {}


def table(
    headers: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()
) -> list[str]:
    """Aligned columns two spaces apart; columns in `right` are aligned right."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    lines = []
    for row in [headers, *rows]:
        cells = [
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines
