"""Parse /dev/kmsg records and recognise the OOM killer's report in them.

The kernel log is the only place that names the process the OOM killer chose,
with its memory figures at the moment of the kill; cgroup counters only say that
a kill happened. The wording changed across kernel versions, so each form is
recognised here and normalised into one :class:`OomKillReport`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Optional

from memdoor.process_text import EscapedText, decode, to_bytes
from memdoor.procfs.errors import ParseError

# The kernel itself logs with facility 0 (LOG_KERN). A write to /dev/kmsg without
# a facility is stored as LOG_USER precisely so that injected lines can be told
# apart from the kernel's, so only facility 0 can carry a real OOM report.
KERNEL_FACILITY = 0

_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
_UNSIGNED = re.compile(r"[0-9]+")

# 5.x and later: "Out of memory: Killed process 1234 (name) total-vm:…kB,
# anon-rss:…kB, file-rss:…kB, shmem-rss:…kB, UID:0 pgtables:…kB oom_score_adj:0"
# (UID, then pgtables and oom_score_adj, were added during 5.x). The prefix is
# "Memory cgroup out of memory" for a cgroup limit and "Out of memory
# (oom_kill_allocating_task)" under that sysctl. Before that the line had no
# prefix, before 4.5 no shmem-rss, and RHEL 7's 3.10 puts ", UID 0," after the
# name. The name group is greedy so that a ")" inside a task name is kept.
_KILLED = re.compile(
    r"(?:(?P<context>.+?): )?Killed process (?P<pid>[0-9]+) \((?P<name>.*)\)"
    r"(?:, UID (?P<uid>[0-9]+),)? total-vm:(?P<total_vm>[0-9]+)kB(?P<rest>.*)",
    re.DOTALL,
)
_FIGURE = re.compile(r"([A-Za-z_-]+):(-?[0-9]+)")

# Before 5.1 the killer first named the process it selected; with "or sacrifice
# child" it could then kill one of that process's children instead, so this line
# alone does not prove that this pid died.
_SELECTED = re.compile(
    r"(?P<context>.+?): Kill process (?P<pid>[0-9]+) \((?P<name>.*)\)"
    r" score [0-9]+ or sacrifice child",
    re.DOTALL,
)

# Before 4.6 every other process sharing the victim's mm was killed too, each
# announced with this line.
_SHARING = re.compile(
    r"Kill process (?P<pid>[0-9]+) \((?P<name>.*)\) sharing same memory", re.DOTALL
)

# 4.19+: the one-line summary of the kill's context, printed just before the kill
# as a series of pr_cont() pieces: cpuset/mems_allowed are absent without
# CONFIG_CPUSETS, and oom_memcg is "global_oom" when no cgroup limit was hit.
# Task names and cgroup paths may contain commas, so the fields are matched in
# their fixed order instead of being split. The line must end in ",uid=N" (it
# always has): printk cuts overlong lines at the end, and a line cut inside the
# pid digits must not yield another pid. Before 5.10 a concurrent printk could
# split the pieces into separate records; those fragments are not recognised,
# while the Killed line, a single printk, always is.
_CONSTRAINT = re.compile(
    r"oom-kill:constraint=(?P<constraint>[A-Z_]+)"
    r",nodemask=.*?"
    r"(?:,cpuset=.*?,mems_allowed=.*?)?"
    r"(?:,oom_memcg=(?P<oom_memcg>.*?)|,global_oom)?"
    r"(?:,task_memcg=(?P<task_memcg>.*?))?"
    r",task=(?P<name>.*),pid=(?P<pid>[0-9]+),uid=(?P<uid>[0-9]+)",
    re.DOTALL,
)

_CGROUP_CONTEXT = "Memory cgroup out of memory"


@dataclass(frozen=True)
class KmsgRecord:
    """One /dev/kmsg record; facility and level come from the syslog priority."""

    facility: int
    level: int
    seq: int
    usec_since_boot: int
    message: str
    dictionary: dict[str, str]


@dataclass(frozen=True)
class OomKillReport:
    """What the kernel log says about one OOM victim; fields a line lacks stay None.

    evidence names the lines it was built from: "killed" (the kill itself),
    "constraint" (the oom-kill: summary) and "selected" (pre-5.1 selection line,
    which is not proof of death). cgroup_kill is None when no line said whether
    a cgroup limit or the whole system ran out of memory.
    """

    pid: int
    name: str
    evidence: tuple[str, ...]
    usec_since_boot: int
    cgroup_kill: Optional[bool] = None
    total_vm_kb: Optional[int] = None
    anon_rss_kb: Optional[int] = None
    file_rss_kb: Optional[int] = None
    shmem_rss_kb: Optional[int] = None
    pgtables_kb: Optional[int] = None
    oom_score_adj: Optional[int] = None
    uid: Optional[int] = None
    constraint: Optional[str] = None
    oom_memcg: Optional[str] = None
    task_memcg: Optional[str] = None

    @property
    def killed(self) -> bool:
        return "killed" in self.evidence


def _unescape(text: str) -> str:
    """Undo the kernel's \\xNN escaping of non-printable bytes and of the backslash.

    The kernel escapes every byte outside printable ASCII, task names and
    cgroup paths included, whatever bytes their owners chose; the bytes are
    decoded the way memdoor decodes every such name (memdoor.process_text).
    """
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise ParseError(f"kmsg: not text read from /dev/kmsg: {exc}") from None
    return decode(_ESCAPE.sub(lambda match: bytes([int(match.group(1), 16)]), raw))


def _own(match: re.Match[str], group: str) -> str:
    """A name or cgroup path cut out of a message, decoded on its own bytes.

    In a message in the escaped form every backslash is doubled, the name's own
    included; the same name read from /proc is in that form only if its own
    bytes need it. A kill is matched to a process by comparing the two.
    """
    piece: str = match.group(group)
    if not isinstance(match.string, EscapedText):
        return piece
    return decode(to_bytes(EscapedText(piece)))


def _own_optional(match: re.Match[str], group: str) -> Optional[str]:
    return None if match.group(group) is None else _own(match, group)


def parse_kmsg_record(line: str) -> KmsgRecord:
    """Parse what one read() of /dev/kmsg returns (Documentation/ABI/testing/dev-kmsg).

    Format: "PRIORITY,SEQ,USEC,FLAGS[,more...];MESSAGE\\n" followed by optional
    " KEY=value\\n" dictionary lines. Prefix fields after the flags (such as
    "caller=T123" with CONFIG_PRINTK_CALLER) are ignored, as the ABI asks.
    """
    head, *continuation = line.rstrip("\n").split("\n")
    prefix, separator, message = head.partition(";")
    fields = prefix.split(",")
    if not separator or len(fields) < 4:
        raise ParseError(f"kmsg: expected 'PRIORITY,SEQ,USEC,FLAGS;MESSAGE', got {line[:120]!r}")
    if not all(_UNSIGNED.fullmatch(field) for field in fields[:3]):
        raise ParseError(f"kmsg: priority, sequence and time must be integers in {prefix[:80]!r}")
    priority, seq, usec = (int(field) for field in fields[:3])
    dictionary = {}
    for extra in continuation:
        key, equals, value = extra[1:].partition("=")
        if not extra.startswith(" ") or not equals or not key:
            raise ParseError(f"kmsg: expected ' KEY=value' continuation, got {extra[:120]!r}")
        dictionary[key] = _unescape(value)
    return KmsgRecord(
        facility=priority >> 3,
        level=priority & 7,
        seq=seq,
        usec_since_boot=usec,
        message=_unescape(message),
        dictionary=dictionary,
    )


def _cgroup_kill_from_context(context: Optional[str]) -> Optional[bool]:
    if context is None:
        return None
    return context.startswith(_CGROUP_CONTEXT)


def _killed_report(match: re.Match[str], usec: int) -> OomKillReport:
    figures = {key: int(value) for key, value in _FIGURE.findall(match.group("rest"))}
    uid = match.group("uid")
    return OomKillReport(
        pid=int(match.group("pid")),
        name=_own(match, "name"),
        evidence=("killed",),
        usec_since_boot=usec,
        cgroup_kill=_cgroup_kill_from_context(match.group("context")),
        total_vm_kb=int(match.group("total_vm")),
        anon_rss_kb=figures.get("anon-rss"),
        file_rss_kb=figures.get("file-rss"),
        shmem_rss_kb=figures.get("shmem-rss"),
        pgtables_kb=figures.get("pgtables"),
        oom_score_adj=figures.get("oom_score_adj"),
        uid=int(uid) if uid is not None else figures.get("UID"),
    )


def _constraint_report(match: re.Match[str], usec: int) -> OomKillReport:
    constraint = match.group("constraint")
    return OomKillReport(
        pid=int(match.group("pid")),
        name=_own(match, "name"),
        evidence=("constraint",),
        usec_since_boot=usec,
        cgroup_kill=constraint == "CONSTRAINT_MEMCG",
        uid=int(match.group("uid")),
        constraint=constraint,
        oom_memcg=_own_optional(match, "oom_memcg"),
        task_memcg=_own_optional(match, "task_memcg"),
    )


def parse_oom_kill(record: KmsgRecord) -> Optional[OomKillReport]:
    """The OOM report a record carries, or None if it is some other message.

    Only the kernel's own records count: anyone allowed to write /dev/kmsg can
    write text that looks like a kill, but not with facility 0.
    """
    if record.facility != KERNEL_FACILITY:
        return None
    message, usec = record.message, record.usec_since_boot
    killed = _KILLED.fullmatch(message)
    if killed:
        return _killed_report(killed, usec)
    constraint = _CONSTRAINT.fullmatch(message)
    if constraint:
        return _constraint_report(constraint, usec)
    selected = _SELECTED.fullmatch(message)
    if selected:
        return OomKillReport(
            pid=int(selected.group("pid")),
            name=_own(selected, "name"),
            evidence=("selected",),
            usec_since_boot=usec,
            cgroup_kill=_cgroup_kill_from_context(selected.group("context")),
        )
    sharing = _SHARING.fullmatch(message)
    if sharing:
        return OomKillReport(
            pid=int(sharing.group("pid")),
            name=_own(sharing, "name"),
            evidence=("killed",),
            usec_since_boot=usec,
        )
    return None


def merge_oom_reports(a: OomKillReport, b: OomKillReport) -> OomKillReport:
    """Combine the lines the kernel printed about the same victim into one report.

    The constraint line (which cgroup, which limit) and the Killed line (memory
    figures) are separate printk calls, and the constraint line is rate-limited
    with the rest of the OOM header, so either may be missing. Each field takes
    the first known value; the time is the earliest line's.
    """
    if a.pid != b.pid:
        raise ValueError(f"cannot merge OOM reports of pid {a.pid} and pid {b.pid}")
    merged = {}
    for field in dataclasses.fields(OomKillReport):
        mine = getattr(a, field.name)
        merged[field.name] = mine if mine is not None else getattr(b, field.name)
    merged["evidence"] = tuple(dict.fromkeys(a.evidence + b.evidence))
    merged["usec_since_boot"] = min(a.usec_since_boot, b.usec_since_boot)
    return OomKillReport(**merged)
