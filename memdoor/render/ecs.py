"""A memdoor record as an Elastic Common Schema document, for Elastic's own views.

Kibana's Discover, Logs and SIEM apps key on ECS fields (`event.*`, `process.*`,
`host.name`); a record in that shape lands next to Beats and Agent data and is
found by the same queries. Everything of memdoor's own lives under the single
`memdoor.` namespace, so no figure can collide with a field ECS defines now or
later, and one index template covers it. There is no `service.name`: ECS means
the service the data is collected from, the watched target, which memdoor knows
only as a configured name (`memdoor.target`); "memdoor" there would mislabel
every target's data.

Whose the process is maps onto the fields ECS defines for it (ECS 9.4.0,
container and orchestrator field sets): `container.id` and `container.runtime`
for the container its cgroup names (not for a runtime's monitor, conmon, which
runs beside the container rather than in it), and for a Kubernetes pod
`orchestrator.type` "kubernetes", `orchestrator.resource.type` "pod" and
`orchestrator.resource.id`, "Unique ID of the resource being acted upon": the
pod's UID. The systemd unit has no ECS field and stays at `memdoor.owner.unit`.

Why not Elastic's `ecs-logging` package: its StructlogFormatter renders a structlog
event dict, not a finished record. It turns structlog's `event` key into
`message` (overwriting ours), leaves every other key at the top level, stamps
`@timestamp` with the formatting time when absent, defaults `ecs.version` to 1.6.0
and returns a string. Mapping our record onto ECS is the whole job here, and it
would do none of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from memdoor.events import Categorization, Event, event_spec
from memdoor.vocabulary import compact_json

# The newest ECS release (v9.4.0); every field used here is unchanged since 8.x.
ECS_VERSION = "9.4.0"
DATASET = "memdoor.record"
MODULE = "memdoor"
NAMESPACE = "memdoor"
# The record keys that become ECS fields outright; the rest stays under memdoor.*,
# so that namespace is the record schema less exactly these.
MOVED_KEYS = ("timestamp", "level", "event", "message")
# An event the table does not know (a record from a newer memdoor, say) is still
# a process event; it only has no code.
_UNKNOWN_EVENT = Categorization("event", ("process",), ("info",))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _event(action: str) -> dict[str, Any]:
    spec = event_spec(action)
    categorization = spec.ecs if spec is not None else _UNKNOWN_EVENT
    event: dict[str, Any] = {
        "kind": categorization.kind,
        "category": list(categorization.category),
        "type": list(categorization.type),
        "action": action,
        "dataset": DATASET,
        "module": MODULE,
    }
    if spec is not None:
        # The journal's MESSAGE_ID: stable per event, what ECS means by an event code.
        event["code"] = spec.message_id
    if categorization.outcome is not None:
        event["outcome"] = categorization.outcome
    return event


def _parent(identity: Mapping[str, Any], tree: Any) -> dict[str, Any]:
    ppid = identity.get("ppid")
    if ppid is None:
        return {}
    parent: dict[str, Any] = {"pid": ppid}
    if isinstance(tree, list) and tree and _mapping(tree[0]).get("pid") == ppid:
        parent["name"] = tree[0]["name"]
    return {"parent": parent}


def _process(record: Mapping[str, Any]) -> dict[str, Any]:
    """ECS process.* for the process the record is about; nulls are left out."""
    identity = _mapping(record.get("process"))
    pid = identity.get("pid", record.get("pid"))
    if pid is None:
        return {}
    process: dict[str, Any] = {"pid": pid}
    if identity.get("name") is not None:
        process["name"] = identity["name"]
    if identity.get("exe") is not None:
        process["executable"] = identity["exe"]
    args = identity.get("cmdline")
    if args:
        process["args"] = list(args)
        process["args_count"] = len(args)
        # ECS joins with spaces, unquoted; the exact argv is process.args.
        process["command_line"] = " ".join(args)
    if identity.get("started_at") is not None:
        process["start"] = identity["started_at"]
    killed_at = _mapping(record.get("kill")).get("killed_at")
    if record.get("event") == Event.OOM_KILLED and killed_at is not None:
        # On oom_kill_nearby the kill is another process's; only here is it this one's end.
        process["end"] = killed_at
    # oom_killed carries the tree only inside the snapshot it kept from before the kill.
    tree = record.get("tree") or _mapping(record.get("last_snapshot")).get("tree")
    process.update(_parent(identity, tree))
    return {"process": process}


def _owner(record: Mapping[str, Any]) -> dict[str, Any]:
    """ECS container.* and orchestrator.* from the record's owner section."""
    owner = _mapping(record.get("owner"))
    container, pod = _mapping(owner.get("container")), _mapping(owner.get("pod"))
    fields: dict[str, Any] = {}
    if container.get("id") is not None and not container.get("monitor"):
        fields["container"] = {"id": container["id"]}
        if container.get("runtime") is not None:
            fields["container"]["runtime"] = container["runtime"]
    if pod.get("uid") is not None:
        fields["orchestrator"] = {
            "type": "kubernetes",
            "resource": {"type": "pod", "id": pod["uid"]},
        }
    return fields


def to_ecs(record: Mapping[str, Any], host_name: str) -> dict[str, Any]:
    """The ECS document for one record. Pure: the record is not modified, but nested
    values under memdoor.* are shared with it, not copied."""
    action = str(record["event"])
    document: dict[str, Any] = {
        "@timestamp": record["timestamp"],
        "message": record.get("message") or action,
        "log": {"level": record["level"]},
        "ecs": {"version": ECS_VERSION},
        "event": _event(action),
        "host": {"name": host_name},
    }
    document.update(_process(record))
    document.update(_owner(record))
    document[NAMESPACE] = {k: v for k, v in record.items() if k not in MOVED_KEYS}
    return document


def ecs_formatter(host_name: str) -> Callable[[Mapping[str, Any]], str]:
    """A record as one line of ECS JSON, for a sink whose format is "ecs"."""
    return lambda record: compact_json(to_ecs(record, host_name))
