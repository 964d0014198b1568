"""One OOM kill as memdoor knows it: what the kernel log said, what the cgroup's
counter did, what systemd-oomd left, and the `kill` section of a record, rendered
here only.

Each source is optional. The kernel log is the only one that names the victim;
a counter that rose while the process died is strong evidence but not proof,
and `sources` says which of them told. `killer` says who: the kernel when the
kernel log or the counter told (a kernel kill wins over a concurrent oomd
mark), systemd-oomd when only its marks or its pre-kill notice did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from memdoor.oom.kernel_log import GroupKill, wall_time_of
from memdoor.oom.oomd import OomdKill
from memdoor.process_text import note_escaped
from memdoor.procfs.kmsg import OomKillReport
from memdoor.vocabulary import rfc3339

# What the kernel log says about the victim, copied into the record as is.
KMSG_FIELDS = (
    "name",
    "constraint",
    "cgroup_kill",
    "oom_memcg",
    "task_memcg",
    "total_vm_kb",
    "anon_rss_kb",
    "file_rss_kb",
    "shmem_rss_kb",
    "pgtables_kb",
    "oom_score_adj",
    "uid",
)


@dataclass(frozen=True)
class Kill:
    report: Optional[OomKillReport]
    counter_before: Optional[int] = None
    counter_after: Optional[int] = None
    # The counter file read for counter_after (and, on the same cgroup, before it).
    counter_file: Optional[str] = None
    oomd: Optional[OomdKill] = None
    # The memory.oom.group kill this one was part of, from the kernel log.
    group: Optional[GroupKill] = None

    @property
    def counter_rose(self) -> bool:
        before, after = self.counter_before, self.counter_after
        return before is not None and after is not None and after > before

    @property
    def sources(self) -> list[str]:
        kernel = ["kmsg"] if self.report else []
        kernel += ["cgroup_counter"] if self.counter_rose else []
        return kernel + ([] if self.oomd is None else self.oomd.sources)

    @property
    def killer(self) -> Optional[str]:
        if self.report is not None or self.counter_rose:
            return "kernel"
        return None if self.oomd is None or not self.oomd.sources else "systemd-oomd"

    @property
    def killed_at(self) -> Optional[float]:
        """Epoch seconds of the kill, when the kernel log said."""
        return None if self.report is None else wall_time_of(self.report.usec_since_boot)

    def fields(self, pid: Optional[int] = None) -> dict[str, Any]:
        """The `kill` section of oom_killed and oom_kill_nearby records: every source.
        pid: the watched process, whose pre-kill snapshot the section links to."""
        report, killed_at, group = self.report, self.killed_at, self.group
        data: dict[str, Any] = {
            "sources": self.sources,
            "killer": self.killer,
            "killed_at": None if killed_at is None else rfc3339(killed_at),
            "oomd": None if self.oomd is None or pid is None else self.oomd.fields(pid),
            "group_cgroup": None if group is None else group.cgroup,
            "group_pids": None if group is None else list(group.pids),
        }
        data.update({name: getattr(report, name) if report else None for name in KMSG_FIELDS})
        data.update(
            cgroup_oom_kill_before=self.counter_before,
            cgroup_oom_kill_after=self.counter_after,
            cgroup_counter_file=self.counter_file,
        )
        return note_escaped(data)
