"""Property: under detail "summary" no record exceeds RECORD_BUDGET, whatever the process,
in memdoor's format or as an ECS document.

Every record a watched process can cause is rendered from arbitrary identities
and snapshots — long and control-character strings, undecodable bytes (lone
surrogates), tens of thousands of arguments, deep ancestries, many mapped
files and sockets, every problem a snapshot can list — through the emitter
and the structlog chain, as the daemon writes them.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memdoor.collect.cgroup import STAT_KEYS, CgroupFigures, MemoryCgroup
from memdoor.collect.identity import ProcessIdentity
from memdoor.collect.memory import MemoryFigures
from memdoor.collect.oom import OomScores
from memdoor.collect.reading import Unreadable
from memdoor.collect.tree import Ancestor
from memdoor.config import ResolvedTarget
from memdoor.emitter import ProcessRecords, TargetRecords
from memdoor.events import Event
from memdoor.oom.kill import Kill
from memdoor.oom.nearby import NearbyKill
from memdoor.process_text import decode, to_bytes
from memdoor.procfs.kmsg import OomKillReport
from memdoor.procfs.maps import Mapping
from memdoor.procfs.net import TCP_STATES, Socket
from memdoor.records import RecordLog
from memdoor.render.bounded import (
    ELLIPSIS,
    LEVELS,
    LONGEST_HOST_NAME,
    RECORD_BUDGET,
    SINK_ALLOWANCE,
    cut_text,
    json_size,
    line_size,
    snapshot_fields,
)
from memdoor.render.ecs import to_ecs
from memdoor.snapshot import Snapshot
from memdoor.vocabulary import compact_json
from memdoor.watch.growth import Growth
from tests.record_schema import validate_record

# Text as memdoor holds what a process chose (memdoor.process_text): bytes that
# cost the most once written (control characters: 6 bytes; an undecodable byte:
# 4, in the escaped form, and its backslashes doubled), that JSON escapes short
# (quote, backslash, newline), and multi-byte text, besides plain ASCII.
HOSTILE_BYTES = st.one_of(
    st.sampled_from(
        [
            *(b"\x01", b"\x1f", b'"', b"\\", b"\n", b"\xff"),
            *("\u2028".encode(), "€".encode(), "𝄞".encode(), b"/"),
        ]
    ),
    st.characters(blacklist_categories=("Cs",)).map(str.encode),
)
INT = st.integers(min_value=0, max_value=2**63)
# The longest growth section: every figure as long as JSON writes it.
WIDEST_GROWTH = Growth(-1.2345678e300, 1.2345678e300, -1.2345678e300, 60.0, 2**63, 1e300).to_dict()


@st.composite
def hostile_text(draw: Any, max_size: int = 6000) -> str:
    """Short or very long: a drawn piece repeated, since drawing 6,000 bytes one by one
    would spend the examples on size instead of variety; cut at max_size bytes, maybe
    inside a character, as the kernel cuts a name."""
    piece = b"".join(draw(st.lists(HOSTILE_BYTES, max_size=12)))
    repeat = draw(st.one_of(st.just(1), st.integers(min_value=1, max_value=max_size)))
    return decode((piece * repeat)[:max_size])


@st.composite
def identities(draw: Any) -> ProcessIdentity:
    cmdline = draw(st.lists(hostile_text(), max_size=8))
    cmdline += [draw(hostile_text(max_size=3))] * draw(st.sampled_from([0, 300, 60_000]))
    return ProcessIdentity(
        pid=draw(st.integers(1, 2**22)),
        ppid=draw(st.integers(0, 2**22)),
        name=draw(hostile_text(max_size=64)),
        start_ticks=draw(INT),
        started_at=draw(st.one_of(st.none(), st.floats(0, 4e9))),
        exe=draw(st.one_of(st.none(), hostile_text())),
        exe_deleted=draw(st.booleans()),
        cmdline=cmdline,
    )


def _optional_int() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), INT)


@st.composite
def cgroups(draw: Any) -> CgroupFigures:
    path = draw(hostile_text())
    return CgroupFigures(
        place=MemoryCgroup(draw(st.sampled_from([1, 2])), "/sys/fs/cgroup" + path, "/", path),
        usage_bytes=draw(_optional_int()),
        limit_bytes=draw(_optional_int()),
        limit_directory=draw(st.one_of(st.none(), hostile_text().map("/sys/fs/cgroup/".__add__))),
        limit_usage_bytes=draw(_optional_int()),
        usage_percent=draw(st.one_of(st.none(), st.floats(0, 1e6))),
        high_bytes=draw(_optional_int()),
        high_directory=None,
        oom_counters=draw(
            st.dictionaries(
                st.sampled_from(["low", "high", "max", "oom", "oom_kill", "oom_group_kill"]), INT
            )
        ),
        oom_counters_source=None,
        stat=draw(st.one_of(st.none(), st.dictionaries(st.sampled_from(sorted(STAT_KEYS)), INT))),
    )


@st.composite
def mappings(draw: Any) -> list[Mapping]:
    """Many groups (one per distinct name) with long names, plus unnamed bulk."""
    names = draw(st.lists(hostile_text(), max_size=40, unique=True))
    bulk = draw(st.sampled_from([0, 20_000]))
    found = [
        Mapping(i << 12, (i + 1) << 12, "r--p", 0, "08:01", i, name, draw(_optional_int()))
        for i, name in enumerate(names)
    ]
    found += [Mapping(i << 12, (i + 2) << 12, "rw-p", 0, "00:00", 0, "", 8) for i in range(bulk)]
    return found


sockets = st.builds(
    Socket,
    protocol=st.sampled_from(["tcp", "udp"]),
    family=st.sampled_from([4, 6]),
    state=st.sampled_from(sorted(TCP_STATES.values())),
    local_address=st.sampled_from(["127.0.0.1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]),
    local_port=st.integers(0, 65535),
    remote_address=st.sampled_from(["0.0.0.0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"]),
    remote_port=st.integers(0, 65535),
    tx_queue=INT,
    rx_queue=INT,
    inode=INT,
)

problems = st.lists(
    st.builds(
        Unreadable,
        what=hostile_text(),
        reason=st.sampled_from(["vanished", "denied", "malformed", "reused", "error"]),
        detail=hostile_text(),
    ),
    # About one per file a snapshot reads: the most it can list.
    max_size=24,
)


memory_figures = st.builds(
    MemoryFigures,
    st.one_of(st.none(), st.integers(1, 2**50)),
    *[_optional_int()] * 9,
    st.sampled_from([None, "smaps", "smaps_rollup"]),
)


@st.composite
def snapshots(draw: Any) -> Snapshot:
    depth = draw(st.sampled_from([0, 3, 16, 17, 200, 4096]))
    name = draw(hostile_text(max_size=64))
    return Snapshot(
        pid=draw(st.integers(1, 2**22)),
        taken_at=draw(st.floats(0, 1.7e9)),
        identity=draw(st.one_of(st.none(), identities())),
        memory=draw(st.one_of(st.none(), memory_figures)),
        cgroup=draw(st.one_of(st.none(), cgroups())),
        oom=draw(
            st.one_of(st.none(), st.builds(OomScores, _optional_int(), st.integers(-1000, 1000)))
        ),
        tree=None if depth == 0 else [Ancestor(depth - i, name) for i in range(depth)],
        mappings=draw(st.one_of(st.none(), mappings())),
        connections=draw(st.one_of(st.none(), st.lists(sockets, max_size=300))),
        problems=draw(problems),
    )


@st.composite
def kills(draw: Any) -> Kill:
    report = OomKillReport(
        pid=draw(st.integers(1, 2**22)),
        name=draw(hostile_text(max_size=64)),
        evidence=("constraint", "killed"),
        usec_since_boot=draw(st.integers(0, 2**40)),
        cgroup_kill=True,
        total_vm_kb=draw(_optional_int()),
        anon_rss_kb=draw(_optional_int()),
        uid=draw(_optional_int()),
        # The kernel log's constraint is [A-Z_]+ (memdoor.procfs.kmsg); only its length varies.
        constraint=draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ_", min_size=1, max_size=40)),
        oom_memcg=draw(hostile_text()),
        task_memcg=draw(hostile_text()),
    )
    return Kill(report, draw(_optional_int()), draw(_optional_int()), draw(hostile_text()))


class LineCollector:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, line: str, record: dict[str, Any]) -> None:
        self.lines.append(line)


def target_records(collector: LineCollector, redact: bool) -> TargetRecords:
    target = ResolvedTarget(
        name="t" * 64,
        pid=1,
        pidfile=None,
        exe=None,
        threshold=99,
        threshold_base="cgroup",
        interval=1.0,
        min_interval=0.1,
        detail="summary",
        full_snapshot_min_interval=300.0,
        full_snapshot_growth=20,
        full_snapshot_on_change=True,
        count=None,
        sections=("memory", "oom", "tree", "mappings", "connections"),
    )
    return TargetRecords(RecordLog(collector), target, redact_cmdline=redact)


def assert_within_budget(lines: list[str]) -> None:
    """Each line, and the ECS document a sink of that format would write instead, fits
    (a lone surrogate counted as its \\udcXX escape, the most any sink makes of it)."""
    assert lines
    for line in lines:
        record = json.loads(line)
        ecs = compact_json(to_ecs(record, LONGEST_HOST_NAME))
        for written in (line, ecs):
            size = len(written.encode("utf-8", "backslashreplace"))
            assert size <= RECORD_BUDGET - SINK_ALLOWANCE, (record["event"], size)
        validate_record(record)


SLOW = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@SLOW
@given(
    identities(),
    snapshots(),
    kills(),
    problems,
    hostile_text(),
    hostile_text(),
    st.booleans(),
)
def test_every_process_record_fits_the_budget(
    identity: ProcessIdentity,
    snapshot: Snapshot,
    kill: Kill,
    found_problems: list[Unreadable],
    path: str,
    text: str,
    redact: bool,
) -> None:
    collector = LineCollector()
    records = ProcessRecords(target_records(collector, redact), identity)
    records.target_found(path, ["psi", "cgroup_v2_events"], found_problems)
    records.full_snapshot(True, snapshot, text, "cgroup")
    records.full_snapshot(False, snapshot, text, "cgroup")
    records.full_snapshot(False, snapshot, text, "cgroup", WIDEST_GROWTH, snapshot)
    records.sample(text, 1e6, "cgroup", snapshot)
    records.sample(text, 1e6, "cgroup", snapshot, WIDEST_GROWTH)
    records.back_below(text, 0.0, "cgroup")
    records.count_reached()
    records.threshold_fallback()
    records.target_gone("exe_mismatch", text)
    records.oom_killed(kill, snapshot, (path, 2**40))
    records.oom_killed(kill, None, None)
    assert_within_budget(collector.lines)


@SLOW
@given(kills(), hostile_text(), hostile_text(), st.one_of(st.none(), st.integers(1, 2**22)))
def test_every_target_record_fits_the_budget(kill: Kill, path: str, text: str, victim: Any) -> None:
    collector = LineCollector()
    records = target_records(collector, redact=False)
    nearby = NearbyKill("t", 7, path, kill, victim, text if victim else None, 3)
    records.oom_kill_nearby(nearby)
    records.watcher_failed(7, RuntimeError(text))
    records.supervision_failed(text)
    records.target_unresolved(text, Unreadable(path, "malformed", text))
    assert_within_budget(collector.lines)


@settings(max_examples=300, deadline=None)
@given(hostile_text(), st.integers(min_value=16, max_value=2048))
def test_a_cut_string_fits_its_limit_and_keeps_both_ends(text: str, limit: int) -> None:
    cut = cut_text(text, limit)
    assert json_size(cut) - 2 <= limit
    if json_size(text) - 2 <= limit:
        assert cut is text
        return
    # Some ellipsis in the cut joins a head and a tail of the bytes the text stands for
    # (compared as bytes: a cut of escaped text that drops every undecodable byte is
    # plain text, spelled differently).
    raw, cut_raw, mark = to_bytes(text), to_bytes(cut), ELLIPSIS.encode()
    assert any(
        cut_raw[i : i + len(mark)] == mark
        and raw.startswith(cut_raw[:i])
        and raw.endswith(cut_raw[i + len(mark) :])
        for i in range(len(cut_raw))
    )
    # Only what does not fit goes: a character costs at most 6 bytes at each end.
    assert json_size(cut) - 2 >= limit - 12


def test_the_worst_process_fits_at_the_last_level() -> None:
    """Every string 6,000 control characters (36 KB of JSON each), 60,000 arguments, a
    4,096-deep ancestry, 40 such mapped files, 300 sockets and 24 problems: only the
    last level fits, and it does."""
    worst = "\x01" * 6000
    big = 2**63
    identity = ProcessIdentity(2**22, 2**22, "\x01" * 64, big, 4e9, worst, True, [worst] * 60_000)
    counters = {key: big for key in ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")}
    cgroup = CgroupFigures(
        MemoryCgroup(2, "/sys/fs/cgroup" + worst, "/", worst),
        *[big] * 2,
        worst,
        big,
        1e6,
        big,
        None,
        counters,
        worst,
        dict.fromkeys(STAT_KEYS, big),
    )
    sockets_ = [
        Socket("tcp", 6, "NEW_SYN_RECV", "ffff::1", 65535, "ffff::2", 65535, big, big, big)
    ] * 300
    snapshot = Snapshot(
        2**22,
        1.7e9,
        identity,
        MemoryFigures(big, *[big] * 9, "smaps_rollup"),
        cgroup,
        OomScores(big, -1000),
        [Ancestor(2**22, "\x01" * 64)] * 4096,
        [
            Mapping(i << 12, (i + 1) << 12, "r--p", big, "08:01", big, worst + str(i), big)
            for i in range(40)
        ],
        connections=sockets_,
        problems=[Unreadable(worst, "malformed", worst)] * 24,
    )
    report = OomKillReport(
        2**22,
        "\x01" * 64,
        ("constraint", "killed"),
        2**40,
        True,
        *[big] * 5,
        -1000,
        big,
        worst,
        worst,
        worst,
    )
    collector = LineCollector()
    records = ProcessRecords(target_records(collector, redact=False), identity)
    records.target_found(worst, ["psi"], snapshot.problems)
    records.full_snapshot(True, snapshot, worst, "cgroup")
    records.full_snapshot(False, snapshot, worst, "cgroup", WIDEST_GROWTH, snapshot)
    records.target_gone("exe_mismatch", worst)
    records.oom_killed(Kill(report, big, big, worst), snapshot, (worst, 2**40))
    assert_within_budget(collector.lines)
    killed = json.loads(collector.lines[-1])["last_snapshot"]
    assert killed["mappings_summary"]["groups"] == []
    assert killed["connections_summary"]["listed"] == []
    assert killed["tree_omitted"] == 4096 - 16


def test_the_ecs_document_counts_too() -> None:
    """ECS copies the command line twice more (process.args, process.command_line): a
    record that fits only in memdoor's format lists fewer mappings."""
    identity = ProcessIdentity(7, 1, "java", 1, None, "/usr/bin/java", False, ["x" * 100] * 19)
    mapped = [
        Mapping(i << 12, (i + 1) << 12, "r--p", 0, "08:01", i, "/lib/" + "a" * 500 + str(i), 4)
        for i in range(40)
    ]
    snapshot = Snapshot(7, 1.7e9, identity, mappings=mapped)
    collector = LineCollector()
    ProcessRecords(target_records(collector, redact=False), identity).full_snapshot(
        True, snapshot, "crossed", "cgroup"
    )
    assert_within_budget(collector.lines)
    (line,) = collector.lines
    assert len(json.loads(line)["mappings_summary"]["groups"]) == LEVELS[1].listed
    # The first level would have fitted memdoor's format, not ECS.
    loosest = snapshot_fields(snapshot, "summary", None, LEVELS[0])
    assert json_size(loosest) + 1024 < RECORD_BUDGET
    assert line_size(Event.THRESHOLD_CROSSED, loosest) > RECORD_BUDGET
