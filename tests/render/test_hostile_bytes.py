"""Any bytes a process can choose, through every step to what an operator reads.

A recorded /proc tree (tests/fixtures/proc/modern) gets the process's name,
argv, exe link, a mapped file's name and its parent's name replaced by
arbitrary bytes; the real collectors read it, the real renderers and the
record chain turn it into a record, the journald sink's fields and the seed's
report. Whatever the bytes: the record is strict UTF-8 JSON the schema
accepts and gives the bytes back, the journal entry holds one MESSAGE (a
single inert line) and one PRIORITY, and the report has no control character
but its newlines. The kernel log's names and cgroup directories with chosen
names are pushed through the same way.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.collect.cgroup import find_cgroup_mounts, memory_cgroup_of, read_cgroup_memory
from memdoor.collect.reading import Unreadable
from memdoor.events import Event
from memdoor.oom.kill import Kill
from memdoor.process_text import decode
from memdoor.procfs.kmsg import merge_oom_reports, parse_kmsg_record, parse_oom_kill
from memdoor.records import RecordLog
from memdoor.render.bounded import snapshot_fields
from memdoor.render.ecs import ecs_formatter
from memdoor.render.seed_text import full_report
from memdoor.render.snapshot_dict import cgroup_dict
from memdoor.sinks.journal_fields import journal_fields
from memdoor.sinks.journal_protocol import decode_entry, encode_entry
from memdoor.snapshot import take_snapshot
from memdoor.vocabulary import compact_json
from tests.collect.trees import MODERN, PARENT
from tests.hostile_text import strict_json_lines, text_bytes, unsafe_characters
from tests.procfs.recorded import fuzz
from tests.procfs.test_kmsg import kernel_escape
from tests.record_schema import validate_record

PID = 7340
RECORDED_PATH = b"/usr/bin/sleep"
CGROUP_FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "cgroup" / "v2"
WORKER = "sys/fs/cgroup/system.slice/app.service/worker"

no_nul = st.binary().filter(lambda raw: b"\0" not in raw)
# The kernel keeps 15 bytes of a name, and a name cannot hold a NUL.
comms = st.binary(max_size=15).filter(lambda raw: b"\0" not in raw)
# /proc/PID/cmdline drops trailing empty arguments with the NULs that end them.
argvs = st.lists(no_nul, min_size=1, max_size=8).filter(lambda argv: argv[-1] != b"")
# /proc/PID/maps writes a newline in a file's name as \012: a raw one never reaches it.
paths = st.binary(max_size=200).filter(lambda raw: b"\0" not in raw and b"\n" not in raw)
exe_links = st.binary(min_size=1, max_size=200).filter(lambda raw: b"\0" not in raw)
# A directory name: no "/" or NUL, and the kernel refuses a newline in a cgroup's.
cgroup_names = st.binary(min_size=1, max_size=100).filter(
    lambda raw: not (set(raw) & set(b"/\0\n")) and raw not in (b".", b"..")
)


@pytest.fixture(scope="module")
def proc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("proc")
    shutil.copytree(MODERN, root, symlinks=True, dirs_exist_ok=True)
    return root


def write_process(
    root: Path, comm: bytes, argv: list[bytes], path: bytes, exe: bytes, parent: bytes
) -> None:
    """The recorded process, renamed: what the kernel would show for those choices."""
    pid_dir = root / str(PID)
    stat = (pid_dir / "stat").read_bytes()
    (pid_dir / "stat").write_bytes(stat[: stat.index(b"(") + 1] + comm + stat[stat.rindex(b")") :])
    parent_stat = (root / str(PARENT) / "stat").read_bytes()
    (root / str(PARENT) / "stat").write_bytes(
        parent_stat[: parent_stat.index(b"(") + 1]
        + parent
        + parent_stat[parent_stat.rindex(b")") :]
    )
    (pid_dir / "cmdline").write_bytes(b"".join(arg + b"\0" for arg in argv))
    recorded = (Path(MODERN) / str(PID) / "maps").read_bytes()
    (pid_dir / "maps").write_bytes(recorded.replace(RECORDED_PATH, path))
    recorded = (Path(MODERN) / str(PID) / "smaps").read_bytes()
    (pid_dir / "smaps").write_bytes(recorded.replace(RECORDED_PATH, path))
    # status escapes the name's backslashes and newlines; the rest stays raw.
    status = (Path(MODERN) / str(PID) / "status").read_bytes()
    name = comm.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
    (pid_dir / "status").write_bytes(status.replace(b"Name:\tsleep\n", b"Name:\t" + name + b"\n"))
    os.unlink(pid_dir / "exe")
    os.symlink(exe, os.fsencode(pid_dir / "exe"))


class Captured:
    """The record chain's sink: what the stdout and journald sinks would be handed."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def emit(self, line: str, record: dict[str, Any]) -> None:
        self.lines.append((line, record))


def journal_entry(line: str, record: dict[str, Any]) -> dict[str, bytes]:
    """What journald receives for a record, read back the way journald reads it.

    decode_entry refuses a field that appears twice, so this holds one MESSAGE
    and one PRIORITY or fails.
    """
    fields = decode_entry(encode_entry(journal_fields(record, line)))
    message = fields["MESSAGE"].decode("utf-8")
    assert "\n" not in message and unsafe_characters(message) == [], message
    assert fields["PRIORITY"] == b"4"
    assert fields["MEMDOOR_RECORD"] == line.encode("utf-8")
    return fields


@fuzz
@given(comms, argvs, paths, exe_links, comms)
def test_any_process_bytes_reach_json_the_journal_and_the_report_intact(
    proc_root: Path, comm: bytes, argv: list[bytes], path: bytes, exe: bytes, parent: bytes
) -> None:
    write_process(proc_root, comm, argv, b"/" + path, exe, parent)

    snapshot = take_snapshot(PID, proc=str(proc_root))

    identity = snapshot.identity
    assert identity is not None and snapshot.mappings is not None, snapshot.problems
    for detail in ("full", "summary"):
        captured = Captured()
        RecordLog(captured).write(
            "warning",
            Event.THRESHOLD_CROSSED,
            {
                "target": "app",
                "pid": PID,
                "message": f"app pid {PID} ({identity.exe or identity.name}) {identity.cmdline}",
                "threshold_percent": 1,
                "threshold_base": "system",
                **snapshot_fields(snapshot, detail),
            },
        )
        ((line, record),) = captured.lines
        (parsed,) = strict_json_lines(line.encode("utf-8") + b"\n")
        validate_record(parsed)
        journal_entry(line, record)
        strict_json_lines(ecs_formatter("web-3")(record).encode("utf-8") + b"\n")
        process = parsed["process"]
        assert text_bytes(process, "name") == comm
        assert text_bytes(process, "exe") == exe.removesuffix(b" (deleted)")
        assert text_bytes(parsed["tree"][0], "name") == parent
        if detail == "full":
            assert text_bytes(process, "cmdline") == argv
            mapped = [text_bytes(mapping, "path") for mapping in parsed["mappings"]]
            # The recorded process maps its executable five times.
            assert mapped.count(b"/" + path) >= 5
    report = full_report(snapshot, identity.exe or "")
    assert unsafe_characters(report) == []


@fuzz
@given(comms, st.lists(cgroup_names, min_size=1, max_size=3))
def test_the_kernel_log_s_names_match_proc_s_and_render_intact(
    comm: bytes, cgroup: list[bytes]
) -> None:
    """The kernel escapes every byte outside printable ASCII in /dev/kmsg; a kill is
    matched to a process by its name, read from /proc/PID/stat undecorated."""
    memcg = b"/" + b"/".join(cgroup)
    killed = parse_kmsg_record(
        f"3,1,2,-;Memory cgroup out of memory: Killed process 42 ({kernel_escape(comm)}) "
        "total-vm:1000kB, anon-rss:900kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:40kB "
        "oom_score_adj:0\n"
    )
    constraint = parse_kmsg_record(
        f"6,2,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
        f"oom_memcg={kernel_escape(memcg)},task_memcg={kernel_escape(memcg)},"
        f"task={kernel_escape(comm)},pid=42,uid=0\n"
    )
    reports = [parse_oom_kill(killed), parse_oom_kill(constraint)]
    assert reports[0] is not None and reports[1] is not None
    report = merge_oom_reports(reports[0], reports[1])

    assert report.name == decode(comm)
    assert report.task_memcg == decode(memcg)
    (kill,) = strict_json_lines(compact_json(Kill(report).fields()).encode("utf-8") + b"\n")
    assert text_bytes(kill, "name") == comm
    assert text_bytes(kill, "task_memcg") == memcg
    assert text_bytes(kill, "oom_memcg") == memcg


@pytest.fixture(scope="module")
def cgroup_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cgroup")
    shutil.copytree(CGROUP_FIXTURE, root, dirs_exist_ok=True)
    return root


@fuzz
@given(cgroup_names)
def test_a_cgroup_named_with_any_bytes_is_read_and_named_intact(
    cgroup_root: Path, name: bytes
) -> None:
    worker = os.fsencode(cgroup_root / WORKER)
    directory = os.path.join(worker, name)
    os.mkdir(directory)
    try:
        for file in os.listdir(worker):
            if file.startswith(b"memory."):
                shutil.copyfile(os.path.join(worker, file), os.path.join(directory, file))
        # A limit of its own, below its parents', so the record names it as limit_path.
        with open(os.path.join(directory, b"memory.max"), "w") as limit:
            limit.write("1048576\n")
        (cgroup_root / "proc" / "4242" / "cgroup").write_bytes(
            b"0::/system.slice/app.service/worker/" + name + b"\n"
        )
        layout = find_cgroup_mounts(str(cgroup_root / "proc"), str(cgroup_root))
        assert not isinstance(layout, Unreadable), layout
        place = memory_cgroup_of(4242, layout, str(cgroup_root / "proc"))
        assert not isinstance(place, Unreadable), place
        figures = read_cgroup_memory(place)
        assert not isinstance(figures, Unreadable), figures
        line = compact_json(cgroup_dict(figures))
    finally:
        shutil.rmtree(directory)
    data = json.loads(line.encode("utf-8").decode("utf-8"))
    path = b"/system.slice/app.service/worker/" + name
    assert text_bytes(data, "path") == path
    assert text_bytes(data, "limit_path") == path
    assert data["limit_kb"] == 1024
