"""Real processes shaped to break the record budget, through the watcher and the emitter.

Each record a watched process causes (found, crossed, sample, back below,
gone, OOM-killed) is rendered by the structlog chain as the daemon writes it,
and must stay within RECORD_BUDGET bytes, as an ECS document too, while saying
what it left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from memdoor.collect.cgroup import CgroupMounts, find_cgroup_mounts
from memdoor.collect.liveness import Liveness, Verdict
from memdoor.lab.memory_cgroup import live_memory_cgroup
from memdoor.oom.kernel_log import KernelLog
from memdoor.records import RecordLog
from memdoor.render.bounded import (
    ELLIPSIS,
    LEVELS,
    LONGEST_HOST_NAME,
    RECORD_BUDGET,
    TREE_FARTHEST,
    TREE_NEAREST,
)
from memdoor.render.ecs import to_ecs
from memdoor.system_memory import MemTotal
from memdoor.vocabulary import compact_json
from memdoor.watch.context import Services
from memdoor.watcher import ProcessWatcher
from tests.process_shapes import (
    long_directory,
    mapping_files,
    nested_cgroups,
    process_chain,
    python_holding,
    running_from,
)
from tests.record_schema import validate_record
from tests.test_watcher import LineCollector, identity_of, make_state, plant_kill

LONG_PATH = 4000


def every_record(pid: int, cgroups: bool = False, **kill: Any) -> list[dict[str, Any]]:
    """The records of one watched process from adoption to its OOM kill, each checked
    against the budget and the schema."""
    services = None
    if cgroups:
        layout = find_cgroup_mounts()
        assert isinstance(layout, CgroupMounts), layout
        services = Services(
            mem_total=MemTotal(), cgroups=layout, kernel_log=KernelLog(), pressure=None
        )
    state = make_state(pid, threshold=1, services=services)
    state.records.redact_cmdline = False
    collector = LineCollector()
    state.records.writer = RecordLog(collector)
    watcher = ProcessWatcher(state, identity_of(pid))
    found = watcher.attach()
    watcher.records.target_found(
        None if watcher.tracker is None else watcher.tracker.place.path, [], found
    )
    taken = asyncio.run(watcher._snapshot(0, force=True))
    assert taken is not None
    snapshot = taken.snapshot
    message = "t pid 1 cgroup " + ("/" if snapshot.cgroup is None else snapshot.cgroup.place.path)
    watcher.records.full_snapshot(True, snapshot, message, "cgroup")
    watcher.records.sample(message, 50.0, "cgroup", snapshot)
    watcher.records.back_below(message, 0.5, "cgroup")
    watcher.records.target_gone("exited", message)
    plant_kill(state, pid, **kill)
    asyncio.run(watcher._ended(Liveness(Verdict.EXITED, None, "gone")))
    records = []
    for line in collector.lines:
        record = json.loads(line)
        ecs = compact_json(to_ecs(record, LONGEST_HOST_NAME))
        for written in (line, ecs):
            assert len(written.encode()) <= RECORD_BUDGET, (record["event"], len(written))
        validate_record(record)
        records.append(record)
    assert [r["event"] for r in records] == [
        "target_found",
        "threshold_crossed",
        "sample",
        "back_below",
        "target_gone",
        "oom_killed",
    ]
    return records


def test_fifty_thousand_empty_arguments() -> None:
    """Each costs 3 bytes of JSON but no character: the count is capped as well.
    (A last argument that is not empty keeps the kernel's trailing NULs meaningful.)"""
    with python_holding("pass", *[""] * 50_000, "last") as pid:
        records = every_record(pid)
    for record in (records[0], records[1], records[-1], records[-1]["last_snapshot"]):
        process = record["process"]
        assert process["cmdline_truncated"] is True
        assert process["cmdline"][:2] == [sys.executable, "-c"]
        assert set(process["cmdline"][3:]) == {""}
        assert 3 < len(process["cmdline"]) <= LEVELS[0].arguments


def test_control_character_arguments_count_as_escaped() -> None:
    """\\x01 is one character and six bytes: 300 of them are 1,800 bytes of JSON, so the
    command line's 2,048 bytes hold one such argument after the interpreter's three."""
    with python_holding("pass", *["\x01" * 300] * 20) as pid:
        records = every_record(pid)
    process = records[1]["process"]
    assert process["cmdline_truncated"] is True
    assert process["cmdline"][:3] == [sys.executable, "-c", process["cmdline"][2]]
    assert len(process["cmdline"]) == 4
    # The level's strings are shorter still: the kept argument is cut in its middle.
    assert process["cmdline"][3].startswith("\x01") and ELLIPSIS in process["cmdline"][3]
    assert "/process/cmdline/3" in records[1]["truncated"]


def test_a_two_hundred_deep_ancestry() -> None:
    with process_chain(200) as chain:
        records = every_record(chain[-1])
    crossed = records[1]
    tree = crossed["tree"]
    assert len(tree) == TREE_NEAREST + TREE_FARTHEST
    # The nearest parents, then the ones that end at PID 1.
    assert [a["pid"] for a in tree[:TREE_NEAREST]] == chain[-2 : -TREE_NEAREST - 2 : -1]
    assert tree[-1]["pid"] == 1
    ancestors_above_the_chain = crossed["tree_omitted"] + len(tree) - (len(chain) - 1)
    assert crossed["tree_omitted"] > 180 and ancestors_above_the_chain >= 1
    assert records[-1]["last_snapshot"]["tree_omitted"] == crossed["tree_omitted"]


def test_mapped_files_with_names_near_path_max(tmp_path: Path) -> None:
    """Thirty files whose paths are 4,000 bytes of control characters: 24 KB of JSON each."""
    directory = long_directory(tmp_path, LONG_PATH - 16)
    paths = [directory / f"f{index:02d}" for index in range(30)]
    with mapping_files(paths) as pid:
        records = every_record(pid)
    summary = records[1]["mappings_summary"]
    names = [g["name"] for g in summary["groups"] if g["kind"] == "file" and ELLIPSIS in g["name"]]
    assert names, summary["groups"]
    # Each cut name keeps the file's own name at its end, and says it was cut.
    assert all(any(name.endswith(p.name) for p in paths) for name in names)
    pointers = [p for p in records[1]["truncated"] if p.startswith("/mappings_summary/groups/")]
    assert len(pointers) == len(names)
    killed = records[-1]["last_snapshot"]["mappings_summary"]
    assert killed["total"] == summary["total"]


def test_an_executable_with_a_path_near_path_max(tmp_path: Path) -> None:
    directory = long_directory(tmp_path, LONG_PATH - 16, "\x1f")
    with running_from(directory) as pid:
        records = every_record(pid)
    for record, pointer in ((records[0], "/process/exe"), (records[-1], "/process/exe")):
        exe = record["process"]["exe"]
        assert exe.startswith(str(tmp_path)[:8]) and exe.endswith("/sleep") and ELLIPSIS in exe
        assert pointer in record["truncated"]
    # The found record's MESSAGE names the exe too, cut alike.
    assert "/message" in records[0]["truncated"]


def test_a_cgroup_path_near_path_max_and_kill_paths_from_the_kernel_log() -> None:
    memcg = "/" + "\x01" * LONG_PATH
    with contextlib.ExitStack() as stack:
        cgroup = stack.enter_context(live_memory_cgroup(1 << 30))
        deep = stack.enter_context(nested_cgroups(cgroup.directory, LONG_PATH))
        pid = stack.enter_context(python_holding("pass", cgroup=deep))
        records = every_record(pid, cgroups=True, oom_memcg=memcg, task_memcg=memcg)
    found, crossed, killed = records[0], records[1], records[-1]
    assert "/cgroup_path" in found["truncated"]
    assert crossed["cgroup"]["path"].endswith("c" * 8) and ELLIPSIS in crossed["cgroup"]["path"]
    assert "/cgroup/path" in crossed["truncated"]
    assert {"/kill/oom_memcg", "/kill/task_memcg"} <= set(killed["truncated"])
    assert "/last_snapshot/cgroup/path" in killed["truncated"]


def test_many_sockets_and_mappings_at_once(spawn_workload) -> None:
    workload = spawn_workload("--mappings", "20000", "--tcp-pairs", "1000", "--sockets")
    records = every_record(workload.pid)
    summary = records[1]["connections_summary"]
    assert summary["total"] >= 2000
    assert len(summary["listed"]) + summary["omitted"] == summary["total"]
