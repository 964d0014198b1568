"""Short human lines for each record, the MESSAGE a person reads in `journalctl`.

The JSON carries the facts; this line must let an operator scanning the journal
see who, how much, and against which threshold without opening the record.
"""

from __future__ import annotations

from typing import Optional


def human_kb(kb: int) -> str:
    if kb < 1024:
        return f"{kb} KiB"
    if kb < 1024 * 1024:
        return f"{kb / 1024:.1f} MiB"
    return f"{kb / (1024 * 1024):.1f} GiB"


def usage_line(
    target: str, pid: int, rss_kb: Optional[int], percent: Optional[float], threshold: int
) -> str:
    """'myapp pid 8893 RSS 3.4 GiB = 53% >= 50%' (or '<' below the threshold)."""
    if rss_kb is None or percent is None:
        return f"{target} pid {pid} RSS unavailable (threshold {threshold}%)"
    relation = ">=" if percent >= threshold else "<"
    # Whole percents read best, but not when rounding would make 49.6% < 50%
    # print as "50% < 50%", nor for the small figures of large hosts.
    shown = f"{percent:.0f}" if percent >= 10 and round(percent) != threshold else f"{percent:.1f}"
    return f"{target} pid {pid} RSS {human_kb(rss_kb)} = {shown}% {relation} {threshold}%"
