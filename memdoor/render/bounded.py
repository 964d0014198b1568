"""A record's fields at the detail the target asks for, within a byte budget.

detail "summary" (the default) keeps every record under RECORD_BUDGET bytes:
the size at which Docker and CRI runtimes split a container's stdout line,
far under Loki's 256 KB line limit, and cheap in the journal. detail "full"
keeps the complete lists; such records travel whole through the journal's
native protocol but may exceed shippers' limits.

The budget counts what is written: UTF-8 bytes after JSON escaping (an empty
argument costs three bytes, a control character six) of the whole line,
envelope included, in either format a sink writes (memdoor's own, or ECS, which
copies the command line twice more). Everything a process controls can grow
without limit (its argument count, the depth of its ancestry, the length of its
exe, cgroup and mapped file names), so a summary is rendered at the loosest of
LEVELS that fits: lists are cut to a number of entries and say how many they
left out, and any string longer than the level allows is cut in its middle,
where an ellipsis stands for what went, and named in the record's `truncated`
list. The last level fits whatever the process looks like
(tests/render/test_record_budget.py renders the worst).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from memdoor.collect.identity import ProcessIdentity
from memdoor.collect.tree import Ancestor
from memdoor.events import EVENTS, Event
from memdoor.process_text import splice
from memdoor.render.ecs import to_ecs
from memdoor.render.snapshot_dict import process_dict, snapshot_dict, tree_list
from memdoor.render.summary import MappingGroups, summarize_connections, summarize_mappings
from memdoor.snapshot import Snapshot
from memdoor.vocabulary import Detail, compact_json, rfc3339

RECORD_BUDGET = 16 * 1024
# Room for what a sink may add to a record it writes (a count of records it dropped).
SINK_ALLOWANCE = 128
# An ECS document carries the host's name: at most HOST_NAME_MAX, 64 bytes.
LONGEST_HOST_NAME = "h" * 64
# The MESSAGE a person reads is cut alike at every level: it names who and how much.
MESSAGE_BYTES = 512
# The nearest parents say who started the process, the ones ending at PID 1 which
# service or session it runs in; a chain deeper than both is cut between them.
TREE_NEAREST = 12
TREE_FARTHEST = 4
ELLIPSIS = "…"


@dataclass(frozen=True)
class Limits:
    """How much of each growing part a summary keeps."""

    # Mapping groups and sockets listed.
    listed: int
    # Encoded bytes of any one string (a path, a name, an argument, a detail).
    text: int
    # Encoded bytes of the command line, and how many arguments it keeps.
    cmdline: int
    arguments: int


LEVELS = (
    Limits(listed=20, text=1024, cmdline=2048, arguments=256),
    Limits(listed=10, text=512, cmdline=2048, arguments=256),
    Limits(listed=5, text=256, cmdline=1024, arguments=64),
    Limits(listed=2, text=128, cmdline=512, arguments=32),
    Limits(listed=0, text=64, cmdline=256, arguments=16),
)

# The parts of a record that shrink with the level; the rest are given as they are.
Render = Callable[[Limits], dict[str, Any]]


def json_size(value: Any) -> int:
    """Bytes value takes in a record. A lone surrogate (an undecoded byte) counts as
    the six bytes of its \\udcXX escape, the most any rendering of it takes."""
    return len(compact_json(value).encode("utf-8", "backslashreplace"))


def _char_size(char: str, all_escaped: bool) -> int:
    """Bytes char takes inside a JSON string: as UTF-8, or as \\u escapes when the text
    holds a lone surrogate, which makes compact_json escape every non-ASCII character."""
    return len(json.dumps(char)) - 2 if all_escaped else json_size(char) - 2


def cut_text(text: str, limit: int) -> str:
    """text if its encoded form (without quotes) takes at most limit bytes, else its
    head and tail around an ellipsis within limit: both ends of a path name it. Text
    in memdoor.process_text's escaped form is never cut inside an escape sequence."""
    if json_size(text) - 2 <= limit:
        return text
    all_escaped = not text.isascii() and not _encodable(text)
    room = limit - _char_size(ELLIPSIS, all_escaped)
    head_end, used = 0, 0
    while used + _char_size(text[head_end], all_escaped) <= room // 2:
        used += _char_size(text[head_end], all_escaped)
        head_end += 1
    tail_start = len(text)
    while tail_start > head_end and used + _char_size(text[tail_start - 1], all_escaped) <= room:
        tail_start -= 1
        used += _char_size(text[tail_start], all_escaped)
    return splice(text, head_end, tail_start, ELLIPSIS)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _pointer_token(key: str) -> str:
    """A key as a JSON Pointer (RFC 6901) spells it."""
    return key.replace("~", "~0").replace("/", "~1")


def cut_strings(value: Any, limit: int, pointer: str, truncated: list[str]) -> Any:
    """value with every string cut to limit bytes; the JSON Pointer of each cut one
    is appended to truncated."""
    if isinstance(value, str):
        cut = cut_text(value, limit)
        if cut is not value:
            truncated.append(pointer)
        return cut
    if isinstance(value, dict):
        return {
            key: cut_strings(item, limit, f"{pointer}/{_pointer_token(str(key))}", truncated)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [
            cut_strings(item, limit, f"{pointer}/{index}", truncated)
            for index, item in enumerate(value)
        ]
    return value


def line_size(event: Event, fields: dict[str, Any]) -> int:
    """Bytes of the longer line a sink may write for a record of these fields: the
    record as memdoor.records completes it, or its ECS document, which copies the
    process's name, exe and command line to ECS's process.*."""
    record = {
        # Any time of the same length as the one memdoor.records will set.
        "timestamp": rfc3339(0),
        "level": EVENTS[event].level,
        "event": event.value,
        "target": None,
        "pid": None,
        "schema_version": 1,
        **fields,
    }
    return max(json_size(record), json_size(to_ecs(record, LONGEST_HOST_NAME)))


def record_fields(
    event: Event,
    detail: Detail,
    message: str,
    fields: dict[str, Any],
    render: Optional[Render] = None,
    budget: int = RECORD_BUDGET - SINK_ALLOWANCE,
) -> dict[str, Any]:
    """A record's fields: message, the given fields, and what render makes of the
    level. Under "summary", at the loosest level whose line fits budget."""
    if detail == "full":
        return {"message": message, **fields, **(render(LEVELS[0]) if render else {})}
    shown = cut_text(message, MESSAGE_BYTES)
    for limits in LEVELS:
        truncated = [] if shown is message else ["/message"]
        rendered = {**fields, **(render(limits) if render else {})}
        bounded = {"message": shown, **cut_strings(rendered, limits.text, "", truncated)}
        if truncated:
            bounded["truncated"] = truncated
        if line_size(event, bounded) <= budget:
            break
    return bounded


def bounded_cmdline(cmdline: Sequence[str], limits: Limits) -> tuple[list[str], bool]:
    """Whole arguments while they fit, in bytes and in number: a java classpath alone
    can be 100 KB, and 50,000 empty arguments cost 150 KB. argv[0] is always kept
    (a long one is cut like any long string)."""
    kept: list[str] = []
    used = 0
    for arg in cmdline:
        size = json_size(arg) + 1
        if kept and (used + size > limits.cmdline or len(kept) >= limits.arguments):
            return kept, True
        kept.append(arg)
        used += size
    return kept, False


def bounded_tree(tree: Sequence[Ancestor]) -> tuple[list[Ancestor], int]:
    """The nearest parents and the ones ending at PID 1, and how many between were left out."""
    if len(tree) <= TREE_NEAREST + TREE_FARTHEST:
        return list(tree), 0
    kept = [*tree[:TREE_NEAREST], *tree[-TREE_FARTHEST:]]
    return kept, len(tree) - len(kept)


def process_fields(
    identity: ProcessIdentity,
    detail: Detail,
    cmdline: Optional[list[str]] = None,
    limits: Limits = LEVELS[0],
) -> dict[str, Any]:
    """The process section of a record, its command line bounded unless detail is full."""
    if detail == "full":
        return process_dict(identity, cmdline)
    kept, truncated = bounded_cmdline(identity.cmdline if cmdline is None else cmdline, limits)
    data = process_dict(identity, kept)
    if truncated:
        data["cmdline_truncated"] = True
    return data


def snapshot_fields(
    snapshot: Snapshot,
    detail: Detail,
    cmdline: Optional[list[str]] = None,
    limits: Limits = LEVELS[0],
    before: Optional[MappingGroups] = None,
) -> dict[str, Any]:
    """The snapshot's part of a record: under "summary", mappings and sockets summarised
    with limits.listed of each listed (with each group's change since before, the
    previous full snapshot, when given), the tree cut between its two ends and the
    command line bounded (strings are cut by record_fields, for the whole record)."""
    if detail == "full":
        return snapshot_dict(snapshot, cmdline)
    data = snapshot_dict(snapshot, cmdline, with_lists=False)
    if snapshot.identity is not None:
        data["process"] = process_fields(snapshot.identity, detail, cmdline, limits)
    if snapshot.tree is not None:
        kept, omitted = bounded_tree(snapshot.tree)
        data["tree"] = tree_list(kept)
        if omitted:
            data["tree_omitted"] = omitted
    if snapshot.mappings is not None:
        data["mappings_summary"] = summarize_mappings(snapshot.mappings, limits.listed, before)
    if snapshot.connections is not None:
        data["connections_summary"] = summarize_connections(snapshot.connections, limits.listed)
    return data
