"""The small words every floor of memdoor shares: enumerations, and the formats of
times, JSON and numbers.

They live here, below everything else, because each was once written two to four
times (the config, the snapshot, the renderers, the sinks), and two copies of a
format drift: the ECS renderer escaped non-ASCII text while the record renderer
did not. Nothing here reads a file or imports another memdoor module.
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Any, Literal, Optional

Section = Literal["memory", "oom", "tree", "mappings", "connections"]
ALL_SECTIONS: tuple[Section, ...] = ("memory", "oom", "tree", "mappings", "connections")
# "system": RSS / MemTotal; "cgroup": the cgroup's usage / its memory limit;
# "any": whichever of the two is nearer its threshold, since either limit can kill.
ThresholdBase = Literal["any", "system", "cgroup"]
# What one figure was measured against.
MeasuredBase = Literal["system", "cgroup"]
# "summary" keeps every record within its budget; "full" lists everything.
Detail = Literal["summary", "full"]
# How a sink writes a record: memdoor's own shape, or an Elastic Common Schema document.
RecordFormat = Literal["memdoor", "ecs"]
# Far beyond any number the kernel writes (2**64 has 20 digits), and under the
# 4,300 digits past which int() raises.
MAX_DIGITS = 1000
# The kernel's PID_MAX_LIMIT on 64-bit: pids are below pid_max, which is at most
# this, so a larger number (in the config or a pidfile) can never name a process.
PID_MAX_LIMIT = 4_194_304


def rfc3339(epoch: float) -> str:
    """UTC with milliseconds and a Z, the form Elasticsearch and Loki parse without a pattern."""
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def compact_json(value: Any) -> str:
    """One line, no spaces, text as UTF-8 rather than \\u escapes: what every record is.

    Always encodable as UTF-8. Text a process chose never holds a lone surrogate
    (memdoor.process_text decodes it where it is read), but a path an operator
    passed in argv can; a record holding one is written with every non-ASCII
    character as a \\u escape instead, which is valid JSON, rather than be lost
    to an encoding error in a sink.
    """
    line = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    if line.isascii():
        return line
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), default=str)
    return line


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs: the kernel log's timestamps and sd_notify's MONOTONIC_USEC."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def decimal(text: str) -> Optional[int]:
    """text as a non-negative integer if it is ASCII digits and nothing else, else None.

    For numbers the kernel, systemd or a pidfile wrote. str.isdigit() accepts
    digits such as '²' that int() refuses, and int() accepts what none of them
    writes (' 7', '+7', '7_000'), so neither alone tells a number from damage.
    Thousands of digits are damage too (and int() refuses them).
    """
    if len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def percent_of(part: int, whole: int) -> float:
    """part as a percentage of whole: RSS of MemTotal, a cgroup's usage of its limit."""
    return part * 100.0 / whole


# A threshold in percent: 0 would fire always, 100 never before the kill.
THRESHOLD_MIN, THRESHOLD_MAX = 1, 99


def path_problem(path: str) -> Optional[str]:
    """Why path cannot name a file memdoor opens, or None.

    A relative path would depend on the working directory, which systemd sets to /.
    """
    if "\0" in path:
        return "must not contain a NUL character"
    if not path.startswith("/"):
        return "must be an absolute path"
    return None
