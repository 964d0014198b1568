"""Parse the text the kernel gives about cgroups: membership, mounts and memory files.

The same host can mount cgroups three ways (pure v1, hybrid, pure v2) and a
process can sit in a cgroup namespace or in a container whose cgroupfs is a bind
mount of a subtree. Everything needed to tell these apart is text in
/proc/PID/cgroup and /proc/self/mountinfo, so it is parsed here without I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional

from memdoor.process_text import from_os
from memdoor.procfs.errors import ParseError
from memdoor.vocabulary import decimal

CgroupVersion = Literal[1, 2]

# Mount options a cgroup v1 superblock shows that are not controllers
# (cgroup1_show_options prints them in the same comma list as the controllers).
# Everything else is kept as a controller name, "name=systemd" included, so a new
# controller is never dropped; a new flag would only show up as a harmless extra.
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {"rw", "ro", "noprefix", "xattr", "clone_children", "cpuset_v2_mode", "favordynmods"}
)

# Below this, a v1 limit is a real number. cgroup v1 has no "max": an unset
# limit reads back as PAGE_COUNTER_MAX pages in bytes, which depends on the page
# size (9223372036854771712 with 4 KiB pages, 9223372036854710272 with 64 KiB
# pages), so an exact comparison would miss some architectures. No machine has
# 2**62 bytes (4 EiB) of memory, so anything at or above it cannot be a limit
# anyone set. (A 32-bit kernel's unset limit is about 8 TiB, below this bound;
# it is still far beyond what such a machine can address, so its percentages
# come out near zero rather than wrong.)
UNLIMITED_FROM = 2**62

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")
# int() would also accept "+5", "1_000" and non-ASCII digits; the kernel writes none of them.
_INTEGER = re.compile(r"-?[0-9]+")


@dataclass(frozen=True)
class CgroupEntry:
    """One line of /proc/PID/cgroup: hierarchy 0 with no controllers is cgroup v2."""

    hierarchy_id: int
    controllers: tuple[str, ...]
    path: str

    @property
    def is_v2(self) -> bool:
        return self.hierarchy_id == 0 and not self.controllers


@dataclass(frozen=True)
class CgroupMount:
    """A cgroupfs mount; root is the cgroup directory that appears at mount_point.

    root is "/" for a mount of the whole hierarchy (or of a cgroup namespace's
    root); a container runtime without cgroup namespaces bind-mounts a subtree,
    and then root is that subtree's path.
    """

    mount_point: str
    version: CgroupVersion
    controllers: tuple[str, ...]
    root: str


def parse_proc_cgroup(text: str) -> list[CgroupEntry]:
    """Parse /proc/PID/cgroup ("ID:controller,list:/path" per line).

    The path is split off at the second colon only, because cgroup names may
    contain colons. A name is any bytes but "/" and a newline (the kernel
    refuses a newline), so lines end at newlines alone and the path is decoded
    by memdoor.process_text; text is the file read with surrogateescape.
    """
    entries = []
    for line in text.split("\n"):
        if not line:
            continue
        parts = line.split(":", 2)
        hierarchy = decimal(parts[0]) if len(parts) == 3 else None
        if hierarchy is None or not parts[2].startswith("/"):
            raise ParseError(f"cgroup: expected 'ID:controllers:/path', got {line[:120]!r}")
        controllers = tuple(name for name in parts[1].split(",") if name)
        entries.append(CgroupEntry(hierarchy, controllers, from_os(parts[2])))
    if not entries:
        raise ParseError("cgroup: no entries")
    return entries


def _unescape_mountinfo(field: str) -> str:
    """Undo the kernel's octal escaping of space, tab, newline and backslash in paths."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo_cgroups(text: str) -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts in /proc/self/mountinfo, in mount order.

    Layout per proc(5): ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] -
    FSTYPE SOURCE SUPER_OPTIONS. The optional fields vary in number, so the
    separator is searched for rather than counted.
    """
    mounts = []
    # The kernel escapes only space, tab, newline and backslash in the paths.
    for line in text.split("\n"):
        if not line:
            continue
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
        except ValueError:
            raise ParseError(f"mountinfo: no ' - ' separator in {line[:160]!r}") from None
        if len(fields) < separator + 4:
            raise ParseError(f"mountinfo: missing fields after ' - ' in {line[:160]!r}")
        fstype = fields[separator + 1]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        root = _unescape_mountinfo(fields[3])
        mount_point = _unescape_mountinfo(fields[4])
        if fstype == "cgroup2":
            mounts.append(CgroupMount(mount_point, 2, (), root))
            continue
        options = fields[separator + 3].split(",")
        controllers = tuple(
            option
            for option in options
            if option
            and option not in _V1_NON_CONTROLLER_OPTIONS
            and not option.startswith("release_agent=")
        )
        mounts.append(CgroupMount(mount_point, 1, controllers, root))
    return mounts


def relative_to_mount_root(cgroup_path: str, mount_root: str) -> Optional[str]:
    """Where a /proc/PID/cgroup path lies below a mount's root, or None if it is not visible.

    Both paths are relative to the reader's cgroup namespace. A process outside
    that namespace shows up with leading "/.." components, and a process outside
    a bind-mounted subtree has a path that does not start with the mount's root:
    in both cases no directory under the mount represents its cgroup.
    """
    parts = [part for part in cgroup_path.split("/") if part]
    root_parts = [part for part in mount_root.split("/") if part]
    if ".." in parts or parts[: len(root_parts)] != root_parts:
        return None
    return "/".join(parts[len(root_parts) :])


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse "key value" lines (memory.events, memory.stat, memory.oom_control, /proc/vmstat).

    Every key is kept, known or not, because kernels keep adding keys to these
    files; a line that is not exactly a key and an integer means the file is not
    what we think it is.
    """
    values = {}
    for line in text.splitlines():
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2 or not _INTEGER.fullmatch(fields[1]):
            raise ParseError(f"flat keyed: expected 'key integer', got {line[:120]!r}")
        values[fields[0]] = int(fields[1])
    return values


def parse_int_file(text: str) -> int:
    """A single-integer file such as memory.current or memory.usage_in_bytes."""
    stripped = text.strip()
    if not _INTEGER.fullmatch(stripped):
        raise ParseError(f"expected one integer, got {text[:80]!r}")
    return int(stripped)


def parse_limit(text: str) -> Optional[int]:
    """A memory limit in bytes, or None for no limit.

    cgroup v2 writes "max"; cgroup v1 writes a huge number instead (see UNLIMITED_FROM).
    """
    if text.strip() == "max":
        return None
    value = parse_int_file(text)
    if value < 0:
        raise ParseError(f"negative memory limit {value}")
    return None if value >= UNLIMITED_FROM else value
