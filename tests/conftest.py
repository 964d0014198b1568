"""Fixtures that tests across the whole suite need."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Optional, Union

import pytest

from tests.workload import SpawnWorkload, Workload, WorkloadStartError, start_workload


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
