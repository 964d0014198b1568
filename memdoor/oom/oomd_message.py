"""systemd-oomd's own words about a kill: which cgroup, and why.

systemd-oomd says why it killed in its log and, in recent versions, on D-Bus
(org.freedesktop.oom1.Manager.Killed), which memdoor has no client for. Its log
line (src/oom/oomd-manager.c; Debian 12's systemd 252 writes it so):

    Killed CGROUP due to memory pressure for MONITORED being 78.50% > 50.00% for > 20s
        with reclaim activity
    Killed CGROUP due to memory used (U) / total (T) and swap used (S) / total (ST)
        being more than 90.00%

and, in the versions that call pre-kill hooks before killing, "Marked CGROUP for
killing due to ..." with the same tail. The reason is named as the D-Bus signal
names it: "memory-pressure", "memory-used".

CGROUP is a path any owner of a delegated subtree names, so it is cut on the
bytes and decoded on its own (memdoor.process_text), and the greedy match takes
the last " due to memory ": text after CGROUP is oomd's, except MONITORED, which
is a unit's cgroup that systemd named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from memdoor.process_text import decode

_KILL = re.compile(
    rb"(?:Killed (?P<killed>/.*)|Marked (?P<marked>/.*) for killing)"
    rb" due to (?P<why>memory pressure|memory used) (?P<tail>.*)",
    re.DOTALL,
)
REASONS = {b"memory pressure": "memory-pressure", b"memory used": "memory-used"}
# oomd's words after "due to " are kept up to this many bytes: the monitored
# cgroup in them is a path, up to PATH_MAX long.
DETAIL_BYTES = 512


@dataclass(frozen=True)
class OomdReason:
    """Why systemd-oomd killed cgroup (its path from the cgroup2 root)."""

    cgroup: str
    # "memory-pressure" or "memory-used", as org.freedesktop.oom1.Manager.Killed says.
    reason: str
    # oomd's own words after "due to ", cut to DETAIL_BYTES.
    detail: str


def parse_oomd_message(raw: bytes) -> Optional[OomdReason]:
    """One MESSAGE of systemd-oomd's, or None when it is not about a kill."""
    match = _KILL.fullmatch(raw.rstrip(b"\n"))
    if match is None:
        return None
    cgroup = match.group("killed") or match.group("marked")
    why = match.group("why")
    detail = why + b" " + match.group("tail")
    if len(detail) > DETAIL_BYTES:
        detail = detail[: DETAIL_BYTES - 3] + "…".encode()
    return OomdReason(decode(cgroup), REASONS[why], decode(detail))


def under(path: str, ancestor: str) -> bool:
    """Whether cgroup path is ancestor or below it (both from the same root)."""
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")
