"""systemd-oomd's kills: the marks it leaves on a cgroup, read before the cgroup goes.

systemd-oomd kills a whole cgroup with SIGKILL from user space, so the kernel
logs nothing and no OOM counter moves. What it leaves (src/oom/oomd-util.c,
oomd_cgroup_kill(), systemd v248 on): just before the SIGKILLs it adds 1 to the
`user.oomd_ooms` extended attribute of the cgroup it kills, and after them the
number of processes killed to `user.oomd_kill`. PID 1 reads `user.oomd_ooms`
when the cgroup empties, logs its own message (MESSAGE_ID d989611b…), and
removes the cgroup about a millisecond later, often before a watcher looks.
So the marks are read
- the moment they change: setxattr(2) raises IN_ATTRIB on the directory
  (inotify), handled on the event loop while oomd is still sending SIGKILL;
- at the process's exit, if the cgroup is still there.
A watched process's cgroup is compared with its reading while it lived, so a
kill of an earlier process in a cgroup that persists is not pinned on it.

systemd v260's pre-kill hook (memdoor.oom.prekill) tells of a kill before it
happens; those notices are kept here too, by cgroup, for the kill record.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import os
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Union

from memdoor.collect.reading import Unreadable, malformed, unreadable_from_oserror
from memdoor.oom.oomd_journal import OomdJournal
from memdoor.oom.oomd_message import OomdReason, under
from memdoor.process_text import note_escaped
from memdoor.vocabulary import rfc3339

OOMS_XATTR = "user.oomd_ooms"
KILLED_XATTR = "user.oomd_kill"
# The attribute is set by whoever owns the cgroup (a delegated unit can write its
# own): read as a number of at most this many digits, else malformed.
_MAX_DIGITS = 20
# A notice tells of a kill that follows within PrekillHookTimeoutSec=; kept longer.
NOTICE_SECONDS = 120.0

_IN_ATTRIB = 0x00000004
_IN_IGNORED = 0x00008000
_IN_ONLYDIR = 0x01000000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_EVENT = struct.Struct("iIII")

Changed = Callable[[], None]


@dataclass(frozen=True)
class OomdMarks:
    """The two attributes of one cgroup; 0 where oomd never set one."""

    ooms: int
    killed: int


def _number(directory: str, name: str) -> Union[int, Unreadable]:
    try:
        raw = os.getxattr(directory, name)
    except OSError as exc:
        if exc.errno == errno.ENODATA:
            return 0
        return unreadable_from_oserror(f"{directory} {name}", exc)
    text = raw.rstrip(b"\0").decode("ascii", "replace")
    if not text.isdigit() or len(text) > _MAX_DIGITS:
        return malformed(f"{directory} {name}", "not a decimal count")
    return int(text)


def read_oomd_marks(directory: str) -> Union[OomdMarks, Unreadable]:
    ooms = _number(directory, OOMS_XATTR)
    if isinstance(ooms, Unreadable):
        return ooms
    killed = _number(directory, KILLED_XATTR)
    return killed if isinstance(killed, Unreadable) else OomdMarks(ooms, killed)


@dataclass(frozen=True)
class PrekillNotice:
    """systemd-oomd announced the kill of cgroup (its path from the cgroup2 root)."""

    cgroup: str
    notified_at: float
    # time.monotonic() of the notice, to forget it.
    seen: float
    # pid -> the time of its prekill_snapshot record, for the kill record's link.
    snapshots: Mapping[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class OomdKill:
    """What tells that systemd-oomd killed a watched process's cgroup."""

    cgroup_path: str
    ooms_before: Optional[int]
    ooms_after: Optional[int]
    processes_killed: Optional[int]
    notice: Optional[PrekillNotice]
    # Why, from oomd's log (memdoor.oom.oomd_journal), once it was read.
    reason: Optional[OomdReason] = None

    @property
    def marked(self) -> bool:
        before, after = self.ooms_before, self.ooms_after
        return after is not None and after > (before or 0)

    @property
    def sources(self) -> list[str]:
        return (["oomd_xattr"] if self.marked else []) + (["prekill_hook"] if self.notice else [])

    def fields(self, pid: int) -> dict[str, Any]:
        notice, reason = self.notice, self.reason
        snapshot_at = None if notice is None else notice.snapshots.get(pid)
        return note_escaped(
            {
                "cgroup": self.cgroup_path,
                "reason": None if reason is None else reason.reason,
                "reason_detail": None if reason is None else reason.detail,
                "oomd_ooms_before": self.ooms_before,
                "oomd_ooms_after": self.ooms_after,
                "processes_killed": self.processes_killed,
                "prekill_notified_at": None if notice is None else rfc3339(notice.notified_at),
                "prekill_snapshot_at": None if snapshot_at is None else rfc3339(snapshot_at),
            }
        )


def _libc() -> Any:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


class OomdHub:
    """One inotify instance for every watched cgroup's oomd marks (an instance per
    process would exhaust fs.inotify.max_user_instances, 128 by default), the
    pre-kill notices, and oomd's log for the reasons."""

    def __init__(self, journal: Optional[OomdJournal] = None) -> None:
        self.journal = OomdJournal() if journal is None else journal
        self._fd = -1
        self.unavailable: Optional[Unreadable] = None
        self._callbacks: dict[int, dict[int, Changed]] = {}
        self._tokens = 0
        self.notices: list[PrekillNotice] = []

    def start(self, loop: asyncio.AbstractEventLoop, follow_journal: bool = False) -> None:
        """follow_journal: where oomd can run (the memory controller on cgroup v2)."""
        if follow_journal:
            self.journal.start(loop)
        libc = _libc()
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            self.unavailable = unreadable_from_oserror("inotify", OSError(err, os.strerror(err)))
            return
        self._fd = fd
        loop.add_reader(fd, self._drain)

    def stop(self, loop: asyncio.AbstractEventLoop) -> None:
        self.journal.stop(loop)
        if self._fd >= 0:
            loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._callbacks.clear()

    def follow(self, directory: str, changed: Changed) -> Callable[[], None]:
        """Call changed when the directory's attributes change; returns the cancel.
        Without inotify (not started, refused) the marks are read at exit only."""
        if self._fd < 0:
            return lambda: None
        libc = _libc()
        wd = libc.inotify_add_watch(self._fd, os.fsencode(directory), _IN_ATTRIB | _IN_ONLYDIR)
        if wd < 0:
            return lambda: None
        self._tokens += 1
        token = self._tokens
        self._callbacks.setdefault(wd, {})[token] = changed

        def cancel() -> None:
            callbacks = self._callbacks.get(wd)
            if callbacks is None or callbacks.pop(token, None) is None or callbacks:
                return
            del self._callbacks[wd]
            if self._fd >= 0:
                libc.inotify_rm_watch(self._fd, wd)  # EINVAL once the directory is gone

        return cancel

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + length
                if mask & _IN_IGNORED:
                    self._callbacks.pop(wd, None)
                    continue
                for changed in list(self._callbacks.get(wd, {}).values()):
                    changed()

    def notify(self, notice: PrekillNotice) -> None:
        now = time.monotonic()
        self.notices = [n for n in self.notices if now - n.seen < NOTICE_SECONDS] + [notice]

    def notice_for(self, cgroup_path: str) -> Optional[PrekillNotice]:
        """The newest recent notice of a kill of this cgroup or an ancestor of it."""
        now = time.monotonic()
        for notice in reversed(self.notices):
            if now - notice.seen < NOTICE_SECONDS and under(cgroup_path, notice.cgroup):
                return notice
        return None


class CgroupOomdMarks:
    """One watched process's cgroup and the oomd marks seen on it (cgroup v2 only)."""

    def __init__(self, hub: OomdHub, directory: str, path: str) -> None:
        self.hub = hub
        self.directory = directory
        self.path = path
        first = read_oomd_marks(directory)
        self.before: Optional[OomdMarks] = None if isinstance(first, Unreadable) else first
        self._latest: Optional[OomdMarks] = None
        self._cancel = hub.follow(directory, self.changed)

    def changed(self) -> None:
        """The attributes changed (from the event loop): read them while the cgroup exists."""
        marks = read_oomd_marks(self.directory)
        if not isinstance(marks, Unreadable):
            self._latest = marks

    def at_exit(self) -> Optional[OomdKill]:
        """oomd's kill of this cgroup, if its marks rose or a pre-kill notice named it."""
        marks = read_oomd_marks(self.directory)
        after = self._latest if isinstance(marks, Unreadable) else marks
        before = self.before
        notice = self.hub.notice_for(self.path)
        kill = OomdKill(
            self.path,
            None if before is None else before.ooms,
            None if after is None else after.ooms,
            None if after is None else after.killed - (0 if before is None else before.killed),
            notice,
            self.hub.journal.reason_for(self.path),
        )
        return kill if kill.sources else None

    def awaits_reason(self, kill: OomdKill) -> bool:
        """Whether oomd's line with the reason may still come: oomd logs it after the
        kill, and memdoor follows its log."""
        return kill.reason is None and kill.marked and self.hub.journal.following

    def with_reason(self, kill: OomdKill) -> OomdKill:
        return replace(kill, reason=self.hub.journal.reason_for(self.path))

    def close(self) -> None:
        self._cancel()


def oomd_evidence(v2_memory: bool, hub: OomdHub) -> dict[str, str]:
    """What daemon_started says of the evidence of systemd-oomd's kills."""
    unused = "not used: systemd-oomd needs the memory controller on cgroup v2"
    inotify, journal = hub.unavailable, hub.journal
    if not v2_memory:
        marks = reasons = unused
    else:
        marks = "read when they change (inotify) and at exit"
        if inotify is not None:
            marks = f"read at exit only (inotify {inotify.reason}: {inotify.detail})"
        reasons = "followed for each kill's reason: " + " ".join(journal.command)
        if not journal.following:
            ended = journal.unavailable
            reasons = "unavailable" + ("" if ended is None else f": {ended.what} {ended.detail}")
    return {
        "oomd_xattrs": marks,
        "oomd_journal": reasons,
        "oomd_dbus": "not read: the system bus needs a D-Bus client memdoor does not depend "
        "on; oomd's log gives the same reason",
    }
