"""A write to a pidfile is heard at once, through a real inotify instance; and a
pidfile target resolves on that write, not on its interval."""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from memdoor.pidfile_changes import PidfileChanges, PidfileListener, parse_events
from memdoor.supervisor import TargetSupervisor
from tests.test_watcher import log_of, make_state, supervising, until
from tests.workload_fixture import SpawnWorkload


def event(wd: int, mask: int, name: bytes = b"", padded_to: int = 0) -> bytes:
    """One struct inotify_event as the kernel writes it: the name NUL-padded."""
    field = name.ljust(padded_to, b"\0") if name else b""
    return struct.pack("iIII", wd, mask, 0, len(field)) + field


def test_events_are_parsed_with_their_padded_names_and_a_truncated_tail_is_left() -> None:
    buffer = event(1, 0x8, b"app.pid", 16) + event(2, 0x8000) + event(1, 0x80, b"x", 16)
    assert list(parse_events(buffer)) == [(1, 0x8, b"app.pid"), (2, 0x8000, b""), (1, 0x80, b"x")]
    assert list(parse_events(buffer[:-3])) == [(1, 0x8, b"app.pid"), (2, 0x8000, b"")]
    assert list(parse_events(buffer[:10])) == []


@asynccontextmanager
async def opened_changes() -> AsyncIterator[PidfileChanges]:
    changes = PidfileChanges()
    loop = asyncio.get_running_loop()
    assert changes.open(loop) is None
    try:
        yield changes
    finally:
        changes.close(loop)


def test_a_closed_write_and_a_rename_into_place_wake_the_listener_of_that_name(
    pidfile_dir: Path,
) -> None:
    heard: list[str] = []

    async def scenario() -> None:
        async with opened_changes() as changes:
            wd = changes.add_watch(str(pidfile_dir))
            assert wd is not None
            assert changes.listen(wd, "app.pid", lambda: heard.append("app"))
            assert changes.listen(wd, "other.pid", lambda: heard.append("other"))
            (pidfile_dir / "app.pid").write_text("123\n")
            await until(lambda: heard == ["app"])
            (pidfile_dir / "new").write_text("456\n")
            os.rename(pidfile_dir / "new", pidfile_dir / "other.pid")
            await until(lambda: heard == ["app", "other"])
            (pidfile_dir / "unrelated").write_text("789\n")
            (pidfile_dir / "app.pid").write_text("124\n")
            await until(lambda: heard == ["app", "other", "app"])

    asyncio.run(scenario())


def test_a_removed_directory_drops_the_watch_and_wakes_its_listeners_to_watch_again(
    pidfile_dir: Path,
) -> None:
    directory = pidfile_dir / "service"
    directory.mkdir()
    woken: list[int] = []

    async def scenario() -> None:
        async with opened_changes() as changes:
            wd = changes.add_watch(str(directory))
            assert wd is not None
            assert changes.listen(wd, "app.pid", lambda: woken.append(wd))
            directory.rmdir()
            await until(lambda: woken == [wd])
            assert not changes.hears(wd)
            # A listener arriving late, after the kernel dropped the watch, is told so.
            assert not changes.listen(wd, "app.pid", lambda: None)
            assert changes.add_watch(str(directory)) is None

    asyncio.run(scenario())


def test_a_forgotten_listener_is_not_woken(pidfile_dir: Path) -> None:
    heard: list[str] = []

    async def scenario() -> None:
        async with opened_changes() as changes:
            listener = PidfileListener(changes, str(pidfile_dir / "app.pid"))
            wd = listener.add_watch()
            assert wd is not None
            listener.listen(wd)
            assert not listener.needs_watch()
            changes.listen(wd, "app.pid", lambda: heard.append("other listener"))
            listener.close()
            assert listener.needs_watch()
            (pidfile_dir / "app.pid").write_text("123\n")
            await until(lambda: heard == ["other listener"])
            pause = asyncio.get_running_loop().create_task(listener.pause(60.0, 0.01))
            await asyncio.sleep(0.1)
            assert not pause.done()
            pause.cancel()

    asyncio.run(scenario())


def test_a_pidfile_target_finds_its_restarted_process_when_the_pidfile_is_written(
    pidfile_dir: Path, spawn_workload: SpawnWorkload
) -> None:
    """An interval of a minute: only the write can make the second process found in
    the test's ten seconds, as it must be for a service killed again soon after."""
    first, second = spawn_workload(), spawn_workload()
    pidfile = pidfile_dir / "app.pid"
    pidfile.write_text(f"{first.pid}\n")
    state = make_state(None, threshold=99, pidfile=str(pidfile), interval=60.0)
    supervisor = TargetSupervisor(state)

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        assert state.services.pidfile_changes.open(loop) is None
        try:
            async with supervising(supervisor):
                await until(lambda: first.pid in supervisor.watchers)
                # Written in place (truncated, then the pid), as `echo $MAINPID > file` does.
                pidfile.write_text(f"{second.pid}\n")
                await until(lambda: second.pid in supervisor.watchers)
        finally:
            state.services.pidfile_changes.close(loop)

    asyncio.run(scenario())
    found = [r[2]["pid"] for r in log_of(state).records if r[1] == "target_found"]
    assert found == [first.pid, second.pid]
