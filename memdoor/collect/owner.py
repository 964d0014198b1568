"""Whose a process is: the unit, container and pod its cgroup names, and the unit's run.

Read once, when a process is adopted: a process rarely changes cgroup, and
the invocation ID is the unit's for as long as that run lasts, which is what
joins memdoor's records to the unit's own journal entries
(`_SYSTEMD_INVOCATION_ID`).

Which path is parsed: the one systemd placed the process by, the cgroup v2
path or, on a cgroup v1 host, the name=systemd hierarchy's; where both are the
root ("/": no systemd, or a runtime that made memory cgroups only), the
memory hierarchy's, which is also what the kernel log prints as task_memcg.

The invocation ID is an extended attribute on the unit's cgroup directory.
systemd sets trusted.invocation_id, which only a process with CAP_SYS_ADMIN
can read (and only PID 1 could have written), and newer releases
user.invocation_id too (src/core/cgroup.c, cgroup_invocation_id_xattr_apply;
Debian 12's systemd 252 has both names in its libsystemd-core-252.so), which
anyone may read but the owner of a delegated unit's cgroup (a user's manager)
could also write. So trusted is read first, and a value is kept only
if it is what systemd writes, 32 lowercase hex digits. A host without systemd
simply has neither, which is not a problem worth a record; a denied or
malformed attribute is.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from typing import Optional, Union

from memdoor.collect.cgroup import CgroupMounts
from memdoor.collect.reading import Unreadable, malformed, read_parsed, unreadable_from_oserror
from memdoor.procfs.cgroup import (
    CgroupEntry,
    CgroupMount,
    parse_mountinfo_cgroups,
    parse_proc_cgroup,
    relative_to_mount_root,
)
from memdoor.procfs.cgroup_owner import NOBODY, CgroupOwner, parse_cgroup_owner

INVOCATION_ID_XATTRS = ("trusted.invocation_id", "user.invocation_id")
_INVOCATION_ID = re.compile(rb"[0-9a-f]{32}")
# A missing attribute, or a filesystem that has none (cgroup v1 without "xattr").
_ABSENT_ERRNOS = {errno.ENODATA, errno.EOPNOTSUPP}
SYSTEMD_V1 = "name=systemd"


@dataclass(frozen=True)
class Ownership:
    """owner: what the path says; invocation_id: the unit's run, None where unknown;
    problems: what was there but could not be read."""

    owner: CgroupOwner
    invocation_id: Optional[str]
    problems: tuple[Unreadable, ...] = ()


def _systemd_entries(entries: list[CgroupEntry]) -> list[CgroupEntry]:
    """The hierarchies systemd names its units in, in the order they are believed."""
    return [entry for entry in entries if entry.is_v2] + [
        entry for entry in entries if SYSTEMD_V1 in entry.controllers
    ]


def owner_path(entries: list[CgroupEntry]) -> Optional[str]:
    """The path to parse: systemd's placement, else the memory cgroup's; None at the root."""
    memory = [entry for entry in entries if "memory" in entry.controllers]
    for entry in _systemd_entries(entries) + memory:
        if entry.path != "/":
            return entry.path
    return None


def _read_invocation_id(directory: str) -> Union[str, Unreadable, None]:
    """The first readable attribute of INVOCATION_ID_XATTRS on directory, None if none is set."""
    for name in INVOCATION_ID_XATTRS:
        try:
            value = os.getxattr(directory, name)
        except OSError as exc:
            if exc.errno in _ABSENT_ERRNOS:
                continue
            return unreadable_from_oserror(f"{directory} xattr {name}", exc)
        if not _INVOCATION_ID.fullmatch(value):
            return malformed(f"{directory} xattr {name}", f"not an invocation ID: {value[:40]!r}")
        return value.decode()
    return None


def _mount_for(entry: CgroupEntry, mounts: list[CgroupMount]) -> list[CgroupMount]:
    if entry.is_v2:
        return [mount for mount in mounts if mount.version == 2]
    return [mount for mount in mounts if mount.version == 1 and SYSTEMD_V1 in mount.controllers]


def _invocation_id(
    unit_path: str, entries: list[CgroupEntry], fs_root: str, proc_root: str
) -> tuple[Optional[str], list[Unreadable]]:
    """Look in each systemd hierarchy where the process sits in the unit's cgroup."""
    mounts = read_parsed(f"{proc_root}/self/mountinfo", parse_mountinfo_cgroups)
    if isinstance(mounts, Unreadable):
        return None, [mounts]
    problems: list[Unreadable] = []
    for entry in _systemd_entries(entries):
        if entry.path != unit_path and not entry.path.startswith(unit_path + "/"):
            continue
        for mount in _mount_for(entry, mounts):
            relative = relative_to_mount_root(unit_path, mount.root)
            if relative is None:
                continue
            directory = os.path.join(fs_root, mount.mount_point.lstrip("/"), relative)
            found = _read_invocation_id(directory)
            if isinstance(found, str):
                return found, []
            if found is not None:
                problems.append(found)
    return None, problems


def read_ownership(pid: int, layout: Optional[CgroupMounts], proc_root: str = "/proc") -> Ownership:
    """The owner of pid's cgroup and its unit's invocation ID; failures are listed, not raised."""
    entries = read_parsed(f"{proc_root}/{pid}/cgroup", parse_proc_cgroup)
    if isinstance(entries, Unreadable):
        return Ownership(NOBODY, None, (entries,))
    path = owner_path(entries)
    owner = NOBODY if path is None else parse_cgroup_owner(path)
    if owner.unit_path is None:
        return Ownership(owner, None)
    fs_root = "/" if layout is None else layout.fs_root
    invocation_id, problems = _invocation_id(owner.unit_path, entries, fs_root, proc_root)
    return Ownership(owner, invocation_id, tuple(problems))
