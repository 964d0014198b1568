"""The `owner` section of a record: whose the process's cgroup is, as plain JSON-able data.

Every key is always there, null where the cgroup path does not say (a process
outside any unit, container or pod), so a query for `owner.unit` means the
same on every record that has the section.
"""

from __future__ import annotations

from typing import Any, Optional

from memdoor.procfs.cgroup_owner import CgroupOwner


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
