"""--since and --until for records read from files, where journalctl is not there to parse them.

Accepted: an ISO 8601 date or time ('2026-11-24', '2026-11-24 19:30',
'2026-11-24T19:30:18.905Z', '2026-11-24T19:30:18+01:00'; without a zone it is
local time), a time of day today ('19:30', '19:30:18'), 'now', 'today',
'yesterday', and a time relative to now: '-1h', '-30min', '-90s', '-2d',
'-1w', '+5min' (units: s, sec, m, min, h, d, w).
"""

from __future__ import annotations

import datetime
import re
from typing import Optional

_RELATIVE = re.compile(r"^([+-])\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?$")


def _midnight(now: float, days_back: int) -> float:
    today = datetime.datetime.fromtimestamp(now).date()
    day = today - datetime.timedelta(days=days_back)
    return datetime.datetime.combine(day, datetime.time()).timestamp()


def parse_moment(text: str, now: float) -> Optional[float]:
    """text as epoch seconds, relative forms counted from now; None when not understood."""
    text = text.strip()
    words = {"now": now, "today": _midnight(now, 0), "yesterday": _midnight(now, 1)}
    if text in words:
        return words[text]
    relative = _RELATIVE.match(text)
    if relative:
        sign, amount, unit = relative.groups()
        offset = float(amount) * _UNIT_SECONDS[unit]
        return now - offset if sign == "-" else now + offset
    if _TIME_OF_DAY.match(text):
        text = datetime.datetime.fromtimestamp(now).date().isoformat() + " " + text
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.timestamp()
