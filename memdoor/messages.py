"""Short human lines for each record, the MESSAGE a person reads in `journalctl`.

The JSON carries the facts; this line must let an operator scanning the journal
see who, how much, and against which threshold without opening the record.
"""

from __future__ import annotations

from typing import Literal, Optional

from memdoor.vocabulary import percent_of

# What a measured record is. Its figures alone would read the same for the crossing,
# a later full snapshot, a sample and the return below the threshold (the last one
# differs only by "<"), so the line says which it is after the figures; the figures
# stay first, where a person scanning the journal looks for them.
Measured = Literal["crossing", "full", "compact", "below"]
_MEASURED_WORDS: dict[Measured, str] = {
    "crossing": "crossed the threshold, full snapshot",
    "full": "still above the threshold, full snapshot",
    "compact": "still above the threshold, sample",
    "below": "back below the threshold",
}


def human_kb(kb: int) -> str:
    if kb < 1024:
        return f"{kb} KiB"
    if kb < 1024 * 1024:
        return f"{kb / 1024:.1f} MiB"
    return f"{kb / (1024 * 1024):.1f} GiB"


def against_threshold(percent: float, threshold: int) -> str:
    """'53% >= 50%', or '49.6% < 50%': whole percents read best, but not when
    rounding would print "50% < 50%", nor for the small figures of large hosts."""
    relation = ">=" if percent >= threshold else "<"
    shown = f"{percent:.0f}" if percent >= 10 and round(percent) != threshold else f"{percent:.1f}"
    return f"{shown}% {relation} {threshold}%"


def usage_line(
    target: str, pid: int, rss_kb: Optional[int], percent: Optional[float], threshold: int
) -> str:
    """'myapp pid 8893 RSS 3.4 GiB = 53% >= 50%' (or '<' below the threshold)."""
    if rss_kb is None or percent is None:
        return f"{target} pid {pid} RSS unavailable (threshold {threshold}%)"
    return f"{target} pid {pid} RSS {human_kb(rss_kb)} = {against_threshold(percent, threshold)}"


def cgroup_usage_line(
    target: str, pid: int, cgroup: str, usage_kb: int, limit_kb: int, threshold: int
) -> str:
    """'myapp pid 8893 cgroup /app.service 200.0 MiB of 256.0 MiB = 78% >= 50%'."""
    percent = percent_of(usage_kb, limit_kb)
    return (
        f"{target} pid {pid} cgroup {cgroup} {human_kb(usage_kb)} of {human_kb(limit_kb)} = "
        f"{against_threshold(percent, threshold)}"
    )


def measured_line(usage: str, measured: Measured) -> str:
    """'myapp pid 8893 RSS 3.4 GiB = 53% >= 50%: crossed the threshold, full snapshot'."""
    return f"{usage}: {_MEASURED_WORDS[measured]}"
