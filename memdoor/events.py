"""Every event memdoor records, in one table: its name, level, journal MESSAGE_ID,
Elastic Common Schema categorization and a one-line meaning.

An event's name is written here and nowhere else in the code: the emitter
(memdoor.emitter) writes records through the Event members, the ECS renderer
and the journal fields look their facts up here, and the JSON Schema's enum,
the journal catalog and the table in docs/records.md are tested against this table.

MESSAGE_IDs are part of the interface: never change or reuse one. A new event
gets a new ID (`systemd-id128 new` makes one), an entry in
packaging/systemd/memdoor.catalog, and its fields in the schema.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, Optional

# syslog(3)'s names, which journald stores as PRIORITY (see memdoor.sinks.journal_fields).
Level = Literal["info", "notice", "warning", "error"]


class Event(str, enum.Enum):
    """The event names, as records carry them in `event`."""

    DAEMON_STARTED = "daemon_started"
    DAEMON_STOPPING = "daemon_stopping"
    CONFIG_RELOADED = "config_reloaded"
    CONFIG_INVALID = "config_invalid"
    TARGET_WAITING = "target_waiting"
    TARGET_UNRESOLVED = "target_unresolved"
    TARGET_FOUND = "target_found"
    THRESHOLD_CROSSED = "threshold_crossed"
    SNAPSHOT = "snapshot"
    BACK_BELOW = "back_below"
    COUNT_REACHED = "count_reached"
    TARGET_GONE = "target_gone"
    WATCHER_FAILED = "watcher_failed"
    SINK_FAILED = "sink_failed"
    NOTIFY_FAILED = "notify_failed"
    SAMPLE = "sample"
    OOM_KILLED = "oom_killed"
    OOM_KILL_NEARBY = "oom_kill_nearby"
    THRESHOLD_FALLBACK = "threshold_fallback"
    KERNEL_LOG_LOST = "kernel_log_lost"
    PREKILL_SNAPSHOT = "prekill_snapshot"
    OOM_GROUP_KILLED = "oom_group_killed"


@dataclass(frozen=True)
class Categorization:
    """ECS's four categorization fields, chosen from its allowed values."""

    kind: str
    category: tuple[str, ...]
    type: tuple[str, ...]
    outcome: Optional[str] = None


@dataclass(frozen=True)
class EventSpec:
    level: Level
    message_id: str
    ecs: Categorization
    meaning: str


_PROCESS_INFO = Categorization("event", ("process",), ("info",))
# ECS expects access/change/end/info/start with category "process", not "error";
# a failure is said by the outcome.
_FAILURE = Categorization("event", ("process",), ("info",), "failure")
# kind "alert": memdoor's threshold is a detection rule run outside the Elastic
# Stack, which is what ECS reserves "alert" for; an OOM kill is the notable event
# itself. Snapshots and samples are measurements at a point in time: "metric".
_METRIC = Categorization("metric", ("process",), ("info",))

EVENTS: dict[Event, EventSpec] = {
    Event.DAEMON_STARTED: EventSpec(
        "info",
        "0b6bbd9ec57b470dba074f0c02c19377",
        Categorization("event", ("process",), ("start",)),
        "the daemon started: its config, pid and which OOM evidence this host gives",
    ),
    Event.DAEMON_STOPPING: EventSpec(
        "info",
        "434dddb1ce1247d9bef3636bacbaae2a",
        Categorization("event", ("process",), ("end",)),
        "the daemon is stopping cleanly (SIGTERM or SIGINT)",
    ),
    Event.CONFIG_RELOADED: EventSpec(
        "info",
        "023953ce2bf3428788e352cf0b339df2",
        Categorization("event", ("configuration",), ("change",)),
        "SIGHUP applied a new file: targets added, removed, changed",
    ),
    Event.CONFIG_INVALID: EventSpec(
        "error",
        "a49a2e2918aa4b9eb58654d3cc800ad3",
        Categorization("event", ("configuration",), ("info",), "failure"),
        "a file was refused (at start: exit 78; on reload: the old one stays)",
    ),
    Event.TARGET_WAITING: EventSpec(
        "info",
        "1ac0b40459a846339d359261c1b31146",
        _PROCESS_INFO,
        "a target has no process yet (said once, not every tick)",
    ),
    Event.TARGET_UNRESOLVED: EventSpec(
        "warning",
        "f983f30f19b54adcbc9a6a5b4232215f",
        _PROCESS_INFO,
        "its pidfile is missing, refused (see Pidfiles) or not a pid, or names another "
        "user's process (said once per distinct problem)",
    ),
    Event.TARGET_FOUND: EventSpec(
        "info",
        "f92481841e024ca5831954b811727b32",
        _PROCESS_INFO,
        "a process was adopted: `process`",
    ),
    Event.THRESHOLD_CROSSED: EventSpec(
        "warning",
        "8e38d7fb2f1a4fefab56509407188c9d",
        Categorization("alert", ("process",), ("change",)),
        "first snapshot at or above the threshold",
    ),
    Event.SNAPSHOT: EventSpec(
        "warning",
        "2a8aba2615ca456bac112607cf1426ea",
        _METRIC,
        "above the threshold and changed materially: a full snapshot (rate-limited)",
    ),
    Event.BACK_BELOW: EventSpec(
        "info",
        "5c7dcf29f2c849bcbed0463e0c8af151",
        Categorization("event", ("process",), ("change",)),
        "the process fell below the threshold again",
    ),
    Event.COUNT_REACHED: EventSpec(
        "info",
        "d3463b23c92b4da2a3f7c2a7115b28bd",
        _PROCESS_INFO,
        "the target's `count` of snapshots is used up",
    ),
    Event.TARGET_GONE: EventSpec(
        "notice",
        "39e732764c7a4085b284c0f66a65175e",
        Categorization("event", ("process",), ("end",)),
        "the process ended (not by the OOM killer), `exec`ed something else, or its pid was reused",
    ),
    Event.WATCHER_FAILED: EventSpec(
        "error",
        "b73efce9ade944aa9dac3d353de8f6c1",
        _FAILURE,
        "a bug: a process task died (`pid` set; the process is watched again from the next "
        "step), or the step finding a target's processes failed (`pid` null; retried every "
        "`interval`); reported again only if the error changes; the others go on",
    ),
    Event.SINK_FAILED: EventSpec(
        "error",
        "c9f28f4c36024b4986771699e1467ac6",
        _FAILURE,
        "an output failed (once per failure)",
    ),
    Event.NOTIFY_FAILED: EventSpec(
        "error",
        "a7c14f88468a4117ba3bf5d49668e2dd",
        _FAILURE,
        "sd_notify failed (once)",
    ),
    Event.SAMPLE: EventSpec(
        "warning",
        "5e8ea1ad936b4db1bed0dddfb31e6895",
        _METRIC,
        "each further `interval` above the threshold: compact figures",
    ),
    Event.OOM_KILLED: EventSpec(
        "error",
        "bb37c87de5bb4dda8d6bff761b4f5839",
        Categorization("alert", ("process",), ("end",)),
        "the OOM killer killed the process: `kill`, `process`, `last_snapshot`",
    ),
    Event.OOM_KILL_NEARBY: EventSpec(
        "error",
        "9d540c938b9f49e289c72182108af04b",
        Categorization("alert", ("process",), ("info",)),
        "it killed another process in a watched process's cgroup: `kill`, `victim_pid`, `kills`",
    ),
    Event.THRESHOLD_FALLBACK: EventSpec(
        "warning",
        "ac64a589d98240309b61b1c1ee82add6",
        _PROCESS_INFO,
        '`threshold_base = "cgroup"` but no limit applies: measuring against MemTotal',
    ),
    Event.KERNEL_LOG_LOST: EventSpec(
        "warning",
        "70382cbe31104b79aaa68d945dcbf9e2",
        _FAILURE,
        "kernel log records were lost before memdoor read them (the ring buffer wrapped) "
        "or could not be parsed: an OOM kill among them cannot be attributed",
    ),
    Event.PREKILL_SNAPSHOT: EventSpec(
        "warning",
        "47997bb6e86e4cddbea5b92c1172e53e",
        _METRIC,
        "systemd-oomd is about to kill `prekill_cgroup` (its pre-kill hook): a snapshot of "
        "a process in it, watched (`target`) or among its largest",
    ),
    Event.OOM_GROUP_KILLED: EventSpec(
        "error",
        "98d7eeb3382e4450b53a32ec63aff1c6",
        Categorization("alert", ("process",), ("end",)),
        "the OOM killer killed a memory.oom.group cgroup as a whole: `group` lists every "
        "process killed together and the watched ones among them",
    ),
}

_BY_NAME: dict[str, EventSpec] = {event.value: spec for event, spec in EVENTS.items()}


def event_spec(name: str) -> Optional[EventSpec]:
    """The facts of the event a record names, or None for a name not in the table.

    Renderers take records as plain mappings, so they look up by the string in
    `event`; a name this table does not know gets their fallback, never an error.
    """
    return _BY_NAME.get(name)
