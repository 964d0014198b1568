"""Fixtures and hooks that tests across the whole suite need."""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Optional, Union

import pytest

from memdoor.lab.unavailable import LabUnavailable
from memdoor.lab.workload_parent import Workload, WorkloadStartError, start_workload
from tests.pidfiles import process_of_nobody, trusted_directory
from tests.workload_fixture import SpawnWorkload


@contextlib.contextmanager
def _unavailable_skips() -> Iterator[None]:
    try:
        yield
    except LabUnavailable as exc:
        pytest.skip(str(exc))


# memdoor.lab knows nothing of pytest: a rig this host cannot run (a memory
# cgroup without root, a private journald without its tools) raises
# LabUnavailable, in a fixture or in the test itself, and the test is skipped
# with the rig's reason.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with _unavailable_skips():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with _unavailable_skips():
        return (yield)


@pytest.fixture
def pidfile_dir() -> Iterator[Path]:
    """A directory memdoor trusts pidfiles in (root's, under /run), removed afterwards."""
    with trusted_directory() as path:
        yield path


@pytest.fixture
def nobodys_process() -> Iterator[int]:
    """A process of the user nobody (not root), killed and reaped afterwards."""
    with process_of_nobody() as pid:
        yield pid


@pytest.fixture
def spawn_workload() -> Iterator[SpawnWorkload]:
    """Start real workload processes; each is stopped and reaped at teardown.

    Teardown is SIGTERM, then SIGKILL after a grace period, so a test that
    fails half-way cannot leave a process holding memory or ports for the
    tests after it.
    """
    stack = contextlib.ExitStack()

    def spawn(*args: Union[str, int, float], cgroup: Optional[str] = None) -> Workload:
        try:
            workload = start_workload(*args, cgroup=cgroup)
        except WorkloadStartError as exc:
            pytest.fail(str(exc), pytrace=False)
        stack.callback(workload.stop)
        return workload

    # ExitStack: one workload that will not die must not spare the others.
    with stack:
        yield spawn
