"""The `owner` section of a record: whose the process's cgroup is, as plain JSON-able data.

Every key is always there, null where the cgroup path does not say (a process
outside any unit, container or pod), so a query for `owner.unit` means the
same on every record that has the section.

The processes of one owner (a thousand targets in one unit, say) share one
section, made once (OWNERS_SHARED at most are remembered), so it is never
changed once made: the records and sinks it goes into only read it.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

from memdoor.procfs.cgroup_owner import CgroupOwner

# Distinct owners remembered: more than the units, containers and pods of most hosts'
# watched processes; past it, the least recent is made again when next asked for.
OWNERS_SHARED = 256


@functools.lru_cache(maxsize=OWNERS_SHARED)
def owner_dict(owner: CgroupOwner, invocation_id: Optional[str] = None) -> dict[str, Any]:
    container, pod = owner.container, owner.pod
    return {
        "unit": owner.unit,
        "slice": owner.slice,
        "user_unit": owner.user_unit,
        "user_slice": owner.user_slice,
        "invocation_id": invocation_id,
        "container": None
        if container is None
        else {"id": container.id, "runtime": container.runtime, "monitor": container.monitor},
        "pod": None if pod is None else {"uid": pod.uid, "qos": pod.qos},
    }
