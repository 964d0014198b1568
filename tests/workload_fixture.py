"""The type of the ``spawn_workload`` fixture, for the tests that annotate it."""

from __future__ import annotations

from typing import Optional, Protocol, Union

from memdoor.lab.workload_parent import Workload


class SpawnWorkload(Protocol):
    """The ``spawn_workload`` fixture (tests/conftest.py): start_workload, stopped at teardown."""

    def __call__(self, *args: Union[str, int, float], cgroup: Optional[str] = None) -> Workload: ...
