"""A snapshot as plain JSON-able data: the one shape shared by every output.

The daemon's records, the seed command's --format json and the journal field
all come from here, so a field means the same thing everywhere and the JSON
Schema describes one structure. Each object holding text a process chose
lists in `escaped` the keys whose text is in memdoor.process_text's escaped form.
"""

from __future__ import annotations

from typing import Any, Optional

from memdoor.collect.cgroup import CgroupFigures
from memdoor.collect.identity import ProcessIdentity
from memdoor.collect.memory import MemoryFigures
from memdoor.collect.tree import Ancestor
from memdoor.process_text import ESCAPED, EscapedText, note_escaped
from memdoor.procfs.maps import Mapping
from memdoor.procfs.net import Socket
from memdoor.snapshot import Snapshot
from memdoor.vocabulary import rfc3339


def process_dict(identity: ProcessIdentity, cmdline: Optional[list[str]]) -> dict[str, Any]:
    return note_escaped(
        {
            "pid": identity.pid,
            "ppid": identity.ppid,
            "name": identity.name,
            "exe": identity.exe,
            "exe_deleted": identity.exe_deleted,
            "cmdline": identity.cmdline if cmdline is None else cmdline,
            "start_ticks": identity.start_ticks,
            "started_at": None if identity.started_at is None else rfc3339(identity.started_at),
        }
    )


def memory_dict(memory: MemoryFigures) -> dict[str, Any]:
    percent = memory.usage_percent
    return {
        "mem_total_kb": memory.mem_total_kb,
        "mem_available_kb": memory.mem_available_kb,
        "rss_kb": memory.rss_kb,
        "rss_anon_kb": memory.rss_anon_kb,
        "rss_file_kb": memory.rss_file_kb,
        "rss_shmem_kb": memory.rss_shmem_kb,
        "pss_kb": memory.pss_kb,
        "uss_kb": memory.uss_kb,
        "swap_kb": memory.swap_kb,
        "page_tables_kb": memory.page_tables_kb,
        "usage_percent": None if percent is None else round(percent, 2),
        "rollup_source": memory.rollup_source,
    }


def _kb(value: Optional[int]) -> Optional[int]:
    return None if value is None else value // 1024


def cgroup_dict(cgroup: CgroupFigures) -> dict[str, Any]:
    percent = cgroup.usage_percent
    return note_escaped(
        {
            "version": cgroup.place.version,
            "path": cgroup.place.path,
            "usage_kb": _kb(cgroup.usage_bytes),
            "limit_kb": _kb(cgroup.limit_bytes),
            "limit_path": cgroup.limit_path,
            "limit_usage_kb": _kb(cgroup.limit_usage_bytes),
            "usage_percent": None if percent is None else round(percent, 2),
            "high_kb": _kb(cgroup.high_bytes),
            "oom_kill": cgroup.oom_counters.get("oom_kill"),
            "oom_counters": dict(cgroup.oom_counters),
            "stat": dict(cgroup.stat or {}),
        }
    )


def mapping_dict(mapping: Mapping) -> dict[str, Any]:
    data: dict[str, Any] = {
        "start": f"{mapping.start:016x}",
        "end": f"{mapping.end:016x}",
        "size_kb": mapping.size_kb,
        "rss_kb": mapping.rss_kb,
        "perms": mapping.perms,
        "offset": mapping.offset,
        "dev": mapping.dev,
        "inode": mapping.inode,
        "path": mapping.path,
    }
    # Only the path is the process's choice; checked alone, as there may be 20,000.
    if isinstance(mapping.path, EscapedText):
        data[ESCAPED] = ["path"]
    return data


def tree_list(tree: list[Ancestor]) -> list[dict[str, Any]]:
    return [note_escaped({"pid": ancestor.pid, "name": ancestor.name}) for ancestor in tree]


def connection_dict(sock: Socket) -> dict[str, Any]:
    return {
        "protocol": sock.protocol,
        "family": sock.family,
        "state": sock.state,
        "local_address": sock.local_address,
        "local_port": sock.local_port,
        "remote_address": sock.remote_address,
        "remote_port": sock.remote_port,
        "tx_queue": sock.tx_queue,
        "rx_queue": sock.rx_queue,
        "inode": sock.inode,
    }


def snapshot_dict(
    snapshot: Snapshot, cmdline: Optional[list[str]] = None, with_lists: bool = True
) -> dict[str, Any]:
    """Sections that were not asked for, or could not be read at all, are absent;
    `problems` says which reads failed and why.

    cmdline overrides the process's own (redaction) without touching the snapshot.
    Without lists, mappings and connections are left for a summary to describe.
    """
    data: dict[str, Any] = {"taken_at": rfc3339(snapshot.taken_at)}
    if snapshot.identity is not None:
        data["process"] = process_dict(snapshot.identity, cmdline)
    if snapshot.memory is not None:
        data["memory"] = memory_dict(snapshot.memory)
    if snapshot.cgroup is not None:
        data["cgroup"] = cgroup_dict(snapshot.cgroup)
    if snapshot.oom is not None:
        data["oom"] = {"score": snapshot.oom.score, "score_adj": snapshot.oom.score_adj}
    if snapshot.tree is not None:
        data["tree"] = tree_list(snapshot.tree)
    if with_lists and snapshot.mappings is not None:
        data["mappings"] = [mapping_dict(m) for m in snapshot.mappings]
    if snapshot.mappings is not None:
        data["mappings_source"] = snapshot.mappings_source
    if with_lists and snapshot.connections is not None:
        data["connections"] = [connection_dict(c) for c in snapshot.connections]
    data["problems"] = [p.to_dict() for p in snapshot.problems]
    return data
