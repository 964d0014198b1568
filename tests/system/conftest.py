"""Fixtures for tests that need a real systemd as PID 1 (see container.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.system.container import Container, booted_container, missing_requirements
from tests.system.memdoor_units import install_memdoor


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "acceptance: memdoor installed and running under systemd as an operator would run it",
    )


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    """One container per test module: a boot costs about a second, a module's tests share
    it and must leave it as they found it (stop the units they start)."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    with booted_container() as booted:
        yield booted


@pytest.fixture(scope="module")
def installed(container: Container) -> Container:
    """The module's container with memdoor installed the documented way (once per module:
    a pip install costs seconds)."""
    install_memdoor(container)
    return container


@pytest.fixture
def stop_afterwards(container: Container) -> Iterator[list[str]]:
    """Units a test starts (it appends their names): disabled, stopped and their failed
    state forgotten afterwards, so the module's shared container is clean for the next test."""
    units: list[str] = []
    yield units
    container.stop_units(units)
