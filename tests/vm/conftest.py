"""One cgroup v2 VM per session (booting costs about 20 s, installing memdoor in it about
90 s under software emulation): every module's scenarios share it and must leave it as
they found it (stop the units they start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.vm.machine import VirtualMachine, booted_vm, missing_requirements


@pytest.fixture(scope="session")
def vm() -> Iterator[VirtualMachine]:
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    with booted_vm() as booted:
        yield booted


@pytest.fixture(scope="session")
def installed_vm(vm: VirtualMachine) -> VirtualMachine:
    """The guest with memdoor installed the documented way: packaging/install.sh, pip
    reading only the wheelhouse (the guest has no network)."""
    output = vm.install_memdoor()
    assert "installed: /usr/local/lib/systemd/system/memdoor@.service" in output
    return vm


@pytest.fixture
def stop_afterwards(vm: VirtualMachine) -> Iterator[list[str]]:
    """Units a test starts (it appends their names): disabled, stopped and their failed
    state forgotten afterwards."""
    units: list[str] = []
    yield units
    vm.stop_units(units, timeout=120)
