"""systemd-oomd's marks on a real cgroup v2 directory, read before the cgroup is removed.

The test plays systemd-oomd and PID 1 as oomd_cgroup_kill() and the unit's end
do: user.oomd_ooms raised, SIGKILL, user.oomd_kill raised, the directory
removed at once. The marks must have been read on inotify's IN_ATTRIB, from
the event loop, since nothing is left to read at the verdict.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from memdoor.collect.reading import Unreadable
from memdoor.oom.kill import Kill
from memdoor.oom.oomd import (
    KILLED_XATTR,
    OOMS_XATTR,
    CgroupOomdMarks,
    OomdHub,
    OomdMarks,
    PrekillNotice,
    read_oomd_marks,
)
from tests.oom.cgroup2_dir import cgroup2_with_child


def test_marks_absent_then_set_then_malformed() -> None:
    with cgroup2_with_child() as cgroup:
        assert read_oomd_marks(cgroup.directory) == OomdMarks(0, 0)
        os.setxattr(cgroup.directory, OOMS_XATTR, b"2")
        os.setxattr(cgroup.directory, KILLED_XATTR, b"7")
        assert read_oomd_marks(cgroup.directory) == OomdMarks(2, 7)
        os.setxattr(cgroup.directory, KILLED_XATTR, b"-1; rm")
        problem = read_oomd_marks(cgroup.directory)
        assert isinstance(problem, Unreadable) and problem.reason == "malformed"


async def play_oomd_kill(hub: OomdHub, keep_cgroup: bool) -> Kill:
    with cgroup2_with_child() as cgroup:
        marks = CgroupOomdMarks(hub, cgroup.directory, cgroup.path)
        os.setxattr(cgroup.directory, OOMS_XATTR, b"1")
        cgroup.child.kill()
        cgroup.child.wait()
        os.setxattr(cgroup.directory, KILLED_XATTR, b"1")
        await asyncio.sleep(0.2)  # the loop reads the marks on IN_ATTRIB
        if not keep_cgroup:
            os.rmdir(cgroup.directory)
        kill = Kill(None, oomd=marks.at_exit())
        marks.close()
        return kill


@pytest.mark.parametrize("keep_cgroup", [True, False])
def test_an_oomd_kill_is_told_even_when_the_cgroup_is_gone(keep_cgroup: bool) -> None:
    async def scenario() -> Kill:
        hub = OomdHub()
        loop = asyncio.get_running_loop()
        hub.start(loop)
        try:
            return await play_oomd_kill(hub, keep_cgroup)
        finally:
            hub.stop(loop)

    kill = asyncio.run(scenario())
    assert kill.killer == "systemd-oomd"
    assert kill.sources == ["oomd_xattr"]
    section = kill.fields(pid=1)
    assert section["oomd"]["oomd_ooms_before"] == 0
    assert section["oomd"]["oomd_ooms_after"] == 1
    assert section["oomd"]["processes_killed"] == 1


def test_without_inotify_a_removed_cgroup_tells_nothing() -> None:
    """The hub never started: the marks are read at exit only, and the cgroup is gone."""

    async def scenario() -> Kill:
        return await play_oomd_kill(OomdHub(), keep_cgroup=False)

    kill = asyncio.run(scenario())
    assert kill.sources == [] and kill.killer is None


def test_a_prekill_notice_of_an_ancestor_names_oomd() -> None:
    hub = OomdHub()
    hub.notify(PrekillNotice("/system.slice", time.time(), time.monotonic(), {42: time.time()}))
    with cgroup2_with_child() as cgroup:
        marks = CgroupOomdMarks(hub, cgroup.directory, "/system.slice/app.service")
        kill = Kill(None, oomd=marks.at_exit())
    assert kill.killer == "systemd-oomd" and kill.sources == ["prekill_hook"]
    linked = kill.fields(pid=42)["oomd"]
    assert linked["prekill_notified_at"] is not None
    assert linked["prekill_snapshot_at"] is not None
    assert kill.fields(pid=43)["oomd"]["prekill_snapshot_at"] is None
    assert hub.notice_for("/system.slicey/app.service") is None


def test_a_kernel_kill_is_the_kernels_even_with_an_oomd_mark() -> None:
    kill = Kill(None, 0, 1, "/x/memory.events")
    assert kill.killer == "kernel"
