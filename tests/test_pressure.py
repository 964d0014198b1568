"""Wake-ups from the kernel, against a real memory cgroup the test creates.

Each test fails by timing out: the wake-up it waits for never came. The
cgroup v2 variants cannot run on these hybrid hosts (the memory controller is
on v1) and skip there with the reason.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from typing import Any, Callable, Union

import pytest

from memdoor.collect.cgroup import find_cgroup_mounts
from memdoor.collect.reading import Unreadable
from memdoor.lab.memory_cgroup import LiveCgroup, live_memory_cgroup
from memdoor.lab.workload import MIB
from memdoor.oom.kernel_log import KernelLog
from memdoor.pressure import PressureHub, Subscription, Wake
from memdoor.system_memory import MemTotal
from memdoor.watch.context import Services
from memdoor.watcher import ProcessWatcher
from tests.test_watcher import identity_of, make_state

# Generous: the kernel signals within microseconds of the crossing; this only
# bounds how long a failing test takes.
WAKE_TIMEOUT = 10.0


async def wait_for_wake(woken: asyncio.Event, cause: Callable[[], object]) -> None:
    assert not woken.is_set(), "woken before anything happened"
    cause()
    await asyncio.wait_for(woken.wait(), WAKE_TIMEOUT)


def run_with_hub(test: Callable[[PressureHub], Awaitable[None]]) -> None:
    async def main() -> None:
        hub = PressureHub()
        hub.start(asyncio.get_running_loop())
        try:
            await test(hub)
        finally:
            hub.close()

    asyncio.run(main())


def limit_watch(
    hub: PressureHub, cgroup: LiveCgroup, wake: Wake
) -> Union[Subscription, Unreadable]:
    """The wake-up a watcher registers on a limited cgroup at 32 MiB, per version."""
    if cgroup.version == 1:
        return hub.watch_v1_usage(cgroup.directory, 32 * MIB, wake)
    with open(os.path.join(cgroup.directory, "memory.high"), "w") as high:
        high.write(str(32 * MIB))
    return hub.watch_v2_events(cgroup.directory, wake)


def test_crossing_in_the_cgroup_wakes() -> None:
    """v1: the usage threshold's eventfd; v2: memory.events when memory.high is hit."""

    async def test(hub: PressureHub) -> None:
        woken = asyncio.Event()
        with live_memory_cgroup(256 * MIB) as cgroup:
            subscription = limit_watch(hub, cgroup, woken.set)
            assert isinstance(subscription, Subscription), subscription
            assert (
                subscription.kind
                == {1: "cgroup_v1_threshold", 2: "cgroup_v2_events"}[cgroup.version]
            )
            await wait_for_wake(woken, lambda: cgroup.spawn("--touch-mb", "64"))

    run_with_hub(test)


def test_unsubscribing_closes_what_was_opened() -> None:
    async def test(hub: PressureHub) -> None:
        with live_memory_cgroup(256 * MIB) as cgroup:
            before = set(os.listdir("/proc/self/fd"))

            def wake() -> None:
                pass

            subscription = limit_watch(hub, cgroup, wake)
            assert isinstance(subscription, Subscription), subscription
            assert set(os.listdir("/proc/self/fd")) > before
            subscription.cancel()
            assert set(os.listdir("/proc/self/fd")) == before

    run_with_hub(test)


def test_system_psi_trigger_registers_or_says_why() -> None:
    """Triggers need PSI in the kernel (psi=1) and, for windows under 2 s, CAP_SYS_RESOURCE."""

    async def test(hub: PressureHub) -> None:
        outcome = hub.watch_psi("/proc/pressure/memory", lambda: None)
        if os.path.exists("/proc/pressure/memory"):
            assert isinstance(outcome, Subscription) and outcome.kind == "psi", outcome
        else:
            assert isinstance(outcome, Unreadable) and outcome.reason == "vanished"

    run_with_hub(test)


def test_a_lowered_limit_moves_the_watchers_wake_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A v1 threshold is a byte value: registered at 50% of 1 GiB it would not fire at
    50% of 128 MiB. The watcher registers again when it finds the limit changed."""
    monkeypatch.setattr("memdoor.watch.measure.CGROUP_REFRESH", 0.0)
    layout = find_cgroup_mounts()
    assert not isinstance(layout, Unreadable)

    async def test(hub: PressureHub) -> None:
        with live_memory_cgroup(1024 * MIB) as cgroup:
            if cgroup.version != 1:
                pytest.skip("cgroup v2 wakes on memory.events, whatever the limit's value")
            holder = cgroup.spawn("--touch-mb", "16")
            services = Services(MemTotal(), layout, KernelLog(), hub)
            state = make_state(holder.pid, 50, services=services, threshold_base="cgroup")
            watcher = ProcessWatcher(state, identity_of(holder.pid))
            woken = asyncio.Event()
            watcher.wake = woken.set  # type: ignore[method-assign]
            watcher.attach()
            try:
                assert "cgroup_v1_threshold" in watcher.wakeups.kinds, watcher.wakeups.problems
                cgroup.set_limit(128 * MIB)
                await watcher.tick()
                await wait_for_wake(woken, lambda: cgroup.spawn("--touch-mb", "80"))
            finally:
                watcher.wakeups.cancel()

    run_with_hub(test)


def test_an_oom_kill_in_the_cgroup_wakes() -> None:
    """v1: memory.oom_control's eventfd; v2: memory.events (its oom_kill line changes)."""

    async def test(hub: PressureHub) -> None:
        woken = asyncio.Event()
        with live_memory_cgroup(64 * MIB) as cgroup:
            if cgroup.version == 1:
                subscription = hub.watch_v1_oom(cgroup.directory, woken.set)
                expected = "cgroup_v1_oom"
            else:
                subscription = hub.watch_v2_events(cgroup.directory, woken.set)
                expected = "cgroup_v2_events"
            assert isinstance(subscription, Subscription), subscription
            assert subscription.kind == expected
            await wait_for_wake(
                woken,
                lambda: cgroup.spawn("--grow-mb-per-s", "300", "--grow-to-mb", "1024"),
            )

    run_with_hub(test)


async def killed_until_woken(child: asyncio.subprocess.Process, woken: list[Any]) -> None:
    """Kill child, then wait up to 2 s for a wake-up to note its exit in woken."""
    child.kill()
    await child.wait()
    for _ in range(100):
        if woken:
            break
        await asyncio.sleep(0.02)


def test_the_process_exit_wakes_once() -> None:
    async def test(hub: PressureHub) -> None:
        woken: list[int] = []
        child = await asyncio.create_subprocess_exec("sleep", "60")
        subscription = hub.watch_exit(child.pid, lambda: woken.append(1))
        assert isinstance(subscription, Subscription) and subscription.kind == "exit"
        await asyncio.sleep(0.2)
        assert woken == []
        await killed_until_woken(child, woken)
        await asyncio.sleep(0.2)  # one-shot: it stays readable, but wakes no more
        assert woken == [1]
        subscription.cancel()

    run_with_hub(test)


def open_pidfds() -> int:
    """How many pidfds this process holds."""
    fds = f"/proc/{os.getpid()}/fd"
    links = []
    for name in os.listdir(fds):
        try:
            links.append(os.readlink(f"{fds}/{name}"))
        except FileNotFoundError:
            continue  # the listing's own descriptor, closed since
    return sum(link == "anon_inode:[pidfd]" for link in links)


def test_wakes_on_one_exit_share_its_pidfd_until_the_last_is_cancelled() -> None:
    async def test(hub: PressureHub) -> None:
        woken: list[str] = []
        child = await asyncio.create_subprocess_exec("sleep", "60")
        before = open_pidfds()
        first = hub.watch_exit(child.pid, lambda: woken.append("first"))
        second = hub.watch_exit(child.pid, lambda: woken.append("second"))
        assert isinstance(first, Subscription) and isinstance(second, Subscription)
        assert open_pidfds() == before + 1
        first.cancel()
        assert open_pidfds() == before + 1
        await killed_until_woken(child, woken)
        assert woken == ["second"]
        # Counted again: from Python 3.12 asyncio holds a pidfd of its own for the
        # child until it is reaped, and the count before included it.
        held = open_pidfds()
        second.cancel()
        assert open_pidfds() == held - 1

    run_with_hub(test)


def test_an_exit_that_cannot_be_watched_names_the_pidfd_of_its_pid() -> None:
    async def test(hub: PressureHub) -> None:
        child = await asyncio.create_subprocess_exec("true")
        await child.wait()
        outcome = hub.watch_exit(child.pid, lambda: None)
        assert isinstance(outcome, Unreadable), outcome
        assert outcome.what == f"pidfd of {child.pid}" and outcome.reason == "vanished"

    run_with_hub(test)
