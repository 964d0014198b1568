from __future__ import annotations

import dataclasses
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.process_text import EscapedText, to_bytes
from memdoor.procfs.errors import ParseError
from memdoor.procfs.kmsg import (
    KmsgRecord,
    OomKillReport,
    merge_oom_reports,
    parse_kmsg_record,
    parse_oom_kill,
)
from tests.procfs.recorded import fuzz, prefixes, value_or_parse_error

# Recorded from /dev/kmsg on this machine (6.18) during a v1 memory cgroup OOM kill.
PROBE = "/process_api/3c10c13f80bfa67e3bcdf9cf1201aaa6/memdoor-probe"
K618_INVOKED = (
    "4,342,794573278,-;python invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0,"
    " oom_score_adj=0\n"
)
K618_USAGE = "6,370,794577259,-;memory: usage 65536kB, limit 65536kB, failcnt 19\n"
K618_TASK_ROW = (
    "6,418,794577371,-;[   4534]     0  4534    69036    18711    17184     1527         0"
    "   204800        0             0 python\n"
)
K618_CONSTRAINT = (
    "6,419,794577374,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
    f"mems_allowed=0,oom_memcg={PROBE},task_memcg={PROBE},task=python,pid=4534,uid=0\n"
)
K618_KILLED = (
    "3,420,794577393,-;Memory cgroup out of memory: Killed process 4534 (python)"
    " total-vm:276144kB, anon-rss:68736kB, file-rss:6108kB, shmem-rss:0kB, UID:0"
    " pgtables:200kB oom_score_adj:0\n"
)


def record(message: str, facility: int = 0, level: int = 3) -> KmsgRecord:
    return KmsgRecord(facility, level, 1, 1000, message, {})


def test_recorded_records() -> None:
    assert parse_kmsg_record(K618_KILLED) == KmsgRecord(
        facility=0,
        level=3,
        seq=420,
        usec_since_boot=794577393,
        message=K618_KILLED.split(";", 1)[1].rstrip("\n"),
        dictionary={},
    )
    assert parse_kmsg_record(K618_CONSTRAINT).level == 6


def test_dictionary_caller_field_and_escapes() -> None:
    parsed = parse_kmsg_record(
        "30,7,12,c,caller=T1;back\\x5cslash, new\\x0aline, \\xc3\\xa9t\\xc3\\xa9\n"
        " SUBSYSTEM=net\n DEVICE=+net:lo\\x20x\n"
    )

    assert (parsed.facility, parsed.level, parsed.seq, parsed.usec_since_boot) == (3, 6, 7, 12)
    assert parsed.message == "back\\slash, new\nline, \u00e9t\u00e9"
    assert parsed.dictionary == {"SUBSYSTEM": "net", "DEVICE": "+net:lo x"}


def test_invalid_utf8_survives_in_the_escaped_form() -> None:
    parsed = parse_kmsg_record("6,1,2,-;bad \\xff byte")

    assert to_bytes(parsed.message) == b"bad \xff byte"
    assert parsed.message == EscapedText("bad \\xff byte")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "no prefix at all\n",
        "6,1,2;three fields\n",
        "x,1,2,-;priority\n",
        "6,-1,2,-;negative sequence\n",
        "6,1,2.5,-;fractional time\n",
        "6,1,2,-;message\nnot a continuation\n",
        "6,1,2,-;message\n =empty key\n",
        "6,1,2,-;message\n no equals sign\n",
        "6,1,2,-;a lone surrogate \ud800 cannot come from bytes\n",
    ],
)
def test_malformed_records(text: str) -> None:
    with pytest.raises(ParseError):
        parse_kmsg_record(text)


escaped_byte = {byte: f"\\x{byte:02x}" for byte in range(256) if byte < 0x20 or byte >= 0x7F}
escaped_byte[ord("\\")] = "\\x5c"


def kernel_escape(data: bytes) -> str:
    """What the kernel does to every byte it puts in a /dev/kmsg record."""
    return "".join(escaped_byte.get(byte, chr(byte)) for byte in data)


@fuzz
@given(
    st.integers(0, 191),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**63 - 1),
    st.binary(max_size=200),
    st.dictionaries(st.from_regex(r"[A-Z_]{1,12}", fullmatch=True), st.binary(max_size=40)),
)
def test_round_trip_of_kernel_escaping(
    priority: int, seq: int, usec: int, message: bytes, dictionary: dict[str, bytes]
) -> None:
    text = f"{priority},{seq},{usec},-;{kernel_escape(message)}\n" + "".join(
        f" {key}={kernel_escape(value)}\n" for key, value in dictionary.items()
    )

    parsed = parse_kmsg_record(text)

    assert to_bytes(parsed.message) == message
    assert {key: to_bytes(value) for key, value in parsed.dictionary.items()} == dictionary
    assert (parsed.facility << 3 | parsed.level, parsed.seq, parsed.usec_since_boot) == (
        priority,
        seq,
        usec,
    )


@fuzz
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    parsed = value_or_parse_error(parse_kmsg_record, text)
    if parsed is not None:
        parse_oom_kill(parsed)
    parse_oom_kill(record(text))


def test_recorded_cgroup_kill() -> None:
    killed = parse_oom_kill(parse_kmsg_record(K618_KILLED))
    constraint = parse_oom_kill(parse_kmsg_record(K618_CONSTRAINT))

    assert killed == OomKillReport(
        pid=4534,
        name="python",
        evidence=("killed",),
        usec_since_boot=794577393,
        cgroup_kill=True,
        total_vm_kb=276144,
        anon_rss_kb=68736,
        file_rss_kb=6108,
        shmem_rss_kb=0,
        pgtables_kb=200,
        oom_score_adj=0,
        uid=0,
    )
    assert constraint == OomKillReport(
        pid=4534,
        name="python",
        evidence=("constraint",),
        usec_since_boot=794577374,
        cgroup_kill=True,
        uid=0,
        constraint="CONSTRAINT_MEMCG",
        oom_memcg=PROBE,
        task_memcg=PROBE,
    )


@pytest.mark.parametrize("text", [K618_INVOKED, K618_USAGE, K618_TASK_ROW])
def test_rest_of_the_oom_report_is_not_a_kill(text: str) -> None:
    assert parse_oom_kill(parse_kmsg_record(text)) is None


# The forms other kernels print, with made-up names and figures; each shape was
# checked against the format strings in mm/oom_kill.c and mm/memcontrol.c of the
# versions named, and against logs users posted from them.
OTHER_KERNELS = [
    pytest.param(
        "Out of memory: Killed process 2718 (stress-ng-vm) total-vm:2160176kB,"
        " anon-rss:1912664kB, file-rss:4kB, shmem-rss:0kB, UID:1000 pgtables:3804kB"
        " oom_score_adj:1000",
        {
            "pid": 2718,
            "name": "stress-ng-vm",
            "cgroup_kill": False,
            "anon_rss_kb": 1912664,
            "uid": 1000,
            "pgtables_kb": 3804,
            "oom_score_adj": 1000,
        },
        id="5.8+ global",
    ),
    pytest.param(
        "Out of memory: Killed process 1813 (java) total-vm:5129212kB, anon-rss:3012244kB,"
        " file-rss:0kB, shmem-rss:12kB, UID:999",
        {"pid": 1813, "shmem_rss_kb": 12, "uid": 999, "pgtables_kb": None, "oom_score_adj": None},
        id="5.x before pgtables",
    ),
    pytest.param(
        "Out of memory (oom_kill_allocating_task): Killed process 77 (a.out)"
        " total-vm:1024kB, anon-rss:512kB, file-rss:0kB, shmem-rss:0kB, UID:0"
        " pgtables:44kB oom_score_adj:0",
        {"pid": 77, "name": "a.out", "cgroup_kill": False},
        id="oom_kill_allocating_task",
    ),
    pytest.param(
        "Killed process 27500 (Rscript) total-vm:38000000kB, anon-rss:1040000kB,"
        " file-rss:8kB, shmem-rss:0kB",
        {"pid": 27500, "cgroup_kill": None, "total_vm_kb": 38000000, "uid": None},
        id="4.x bare",
    ),
    pytest.param(
        "Killed process 960 (app.bin) total-vm:67000kB, anon-rss:14000kB, file-rss:500kB",
        {"pid": 960, "file_rss_kb": 500, "shmem_rss_kb": None},
        id="3.x before shmem-rss",
    ),
    pytest.param(
        "Killed process 42460 (memcg_test_2), UID 0, total-vm:7300kB, anon-rss:100kB,"
        " file-rss:160kB, shmem-rss:0kB",
        {"pid": 42460, "name": "memcg_test_2", "uid": 0, "anon_rss_kb": 100},
        id="RHEL 7 3.10",
    ),
    pytest.param(
        "Killed process 99 (a) b, c) total-vm:10kB, anon-rss:1kB, file-rss:2kB, shmem-rss:3kB",
        {"pid": 99, "name": "a) b, c", "shmem_rss_kb": 3},
        id="parenthesis in the task name",
    ),
]


@pytest.mark.parametrize(("message", "expected"), OTHER_KERNELS)
def test_killed_lines_of_other_kernels(message: str, expected: dict[str, object]) -> None:
    report = parse_oom_kill(record(message))

    assert report is not None
    assert report.killed
    assert {name: getattr(report, name) for name in expected} == expected


def test_selection_line_is_not_proof_of_death() -> None:
    report = parse_oom_kill(
        record(
            "Memory cgroup out of memory: Kill process 42461 (memcg_test_2) score 0"
            " or sacrifice child"
        )
    )

    assert report == OomKillReport(
        pid=42461,
        name="memcg_test_2",
        evidence=("selected",),
        usec_since_boot=1000,
        cgroup_kill=True,
    )
    assert not report.killed


def test_process_sharing_the_victims_memory() -> None:
    report = parse_oom_kill(record("Kill process 1235 (worker) sharing same memory"))

    assert report is not None
    assert (report.pid, report.name, report.killed) == (1235, "worker", True)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            "oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,3,"
            "global_oom,task_memcg=/user.slice/user-1000.slice/session-3.scope,"
            "task=stress-ng-vm,pid=2718,uid=1000",
            (
                2718,
                "stress-ng-vm",
                False,
                "CONSTRAINT_NONE",
                None,
                "/user.slice/user-1000.slice/session-3.scope",
                1000,
            ),
            id="global, commas in mems_allowed",
        ),
        pytest.param(
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),"
            "cpuset=cri-containerd-0a1b.scope,mems_allowed=0-1,"
            "oom_memcg=/kubepods.slice/kubepods-burstable.slice/pod-a,"
            "task_memcg=/kubepods.slice/kubepods-burstable.slice/pod-a/cri-containerd-0a1b.scope,"
            "task=pt_main_thread,pid=461700,uid=0",
            (
                461700,
                "pt_main_thread",
                True,
                "CONSTRAINT_MEMCG",
                "/kubepods.slice/kubepods-burstable.slice/pod-a",
                "/kubepods.slice/kubepods-burstable.slice/pod-a/cri-containerd-0a1b.scope",
                0,
            ),
            id="kubernetes pod limit",
        ),
        pytest.param(
            "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),oom_memcg=/a,b,"
            "task_memcg=/a,b/c,task=odd,name,pid=5,uid=7",
            (5, "odd,name", True, "CONSTRAINT_MEMCG", "/a,b", "/a,b/c", 7),
            id="no CONFIG_CPUSETS, commas in names",
        ),
    ],
)
def test_constraint_lines(message: str, expected: tuple[object, ...]) -> None:
    report = parse_oom_kill(record(message))

    assert report is not None
    assert not report.killed
    assert (
        report.pid,
        report.name,
        report.cgroup_kill,
        report.constraint,
        report.oom_memcg,
        report.task_memcg,
        report.uid,
    ) == expected


@pytest.mark.parametrize(
    "message",
    [
        "oom_reaper: reaped process 4534 (python), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB",
        "Out of memory and no killable processes...",
        "Memory cgroup out of memory: Killed process 4534 (python)",
        "Killed process x (python) total-vm:1kB",
        "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),task=python,pid=4534",
        "memdoor-test: Killed process, or so they say",
    ],
)
def test_lookalikes_are_not_kills(message: str) -> None:
    assert parse_oom_kill(record(message)) is None


def test_injected_from_userspace_is_ignored() -> None:
    # What "echo 'Out of memory: Killed process …' > /dev/kmsg" produces: LOG_USER.
    message = K618_KILLED.split(";", 1)[1].rstrip("\n")

    assert parse_oom_kill(record(message, facility=1)) is None
    assert parse_oom_kill(record(message, facility=0)) is not None


def test_every_cut_is_rejected_or_names_the_right_pid() -> None:
    for whole in (K618_KILLED, K618_CONSTRAINT):
        for text in prefixes(whole):
            parsed = value_or_parse_error(parse_kmsg_record, text)
            report = parse_oom_kill(parsed) if parsed is not None else None
            assert report is None or (report.pid, report.name) == (4534, "python"), repr(text)


def test_merge_combines_both_lines() -> None:
    killed = parse_oom_kill(parse_kmsg_record(K618_KILLED))
    constraint = parse_oom_kill(parse_kmsg_record(K618_CONSTRAINT))
    assert killed is not None and constraint is not None

    merged = merge_oom_reports(constraint, killed)

    assert merged == dataclasses.replace(
        killed,
        evidence=("constraint", "killed"),
        usec_since_boot=794577374,
        constraint="CONSTRAINT_MEMCG",
        oom_memcg=PROBE,
        task_memcg=PROBE,
    )
    assert merge_oom_reports(killed, constraint) == dataclasses.replace(
        merged, evidence=("killed", "constraint")
    )


def test_merge_fills_unknown_cgroup_kill_of_old_kernels() -> None:
    selected = parse_oom_kill(
        record("Memory cgroup out of memory: Kill process 42460 (t) score 0 or sacrifice child")
    )
    killed = parse_oom_kill(record("Killed process 42460 (t) total-vm:7kB, anon-rss:1kB"))
    assert selected is not None and killed is not None and killed.cgroup_kill is None

    merged = merge_oom_reports(killed, selected)

    assert merged.cgroup_kill is True
    assert merged.killed
    assert merged.anon_rss_kb == 1


def test_merge_refuses_different_pids() -> None:
    a = OomKillReport(pid=1, name="a", evidence=("killed",), usec_since_boot=1)
    b = OomKillReport(pid=2, name="a", evidence=("constraint",), usec_since_boot=1)

    with pytest.raises(ValueError, match="pid 1 and pid 2"):
        merge_oom_reports(a, b)


comm = st.text(st.sampled_from("abcxyz0189 ()-_.,/"), min_size=1, max_size=15)
kb = st.integers(0, 2**40)


@fuzz
@given(
    st.integers(1, 2**22),
    comm,
    kb,
    kb,
    kb,
    kb,
    kb,
    st.integers(-1000, 1000),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
def test_any_modern_kill_line_round_trips(
    pid: int,
    name: str,
    total_vm: int,
    anon: int,
    file: int,
    shmem: int,
    pgtables: int,
    adj: int,
    uid: int,
    in_cgroup: bool,
) -> None:
    context = "Memory cgroup out of memory" if in_cgroup else "Out of memory"
    message = (
        f"{context}: Killed process {pid} ({name}) total-vm:{total_vm}kB, anon-rss:{anon}kB,"
        f" file-rss:{file}kB, shmem-rss:{shmem}kB, UID:{uid} pgtables:{pgtables}kB"
        f" oom_score_adj:{adj}"
    )

    report: Optional[OomKillReport] = parse_oom_kill(record(message))

    assert report == OomKillReport(
        pid=pid,
        name=name,
        evidence=("killed",),
        usec_since_boot=1000,
        cgroup_kill=in_cgroup,
        total_vm_kb=total_vm,
        anon_rss_kb=anon,
        file_rss_kb=file,
        shmem_rss_kb=shmem,
        pgtables_kb=pgtables,
        oom_score_adj=adj,
        uid=uid,
    )
