"""The shipped unit and the install path, checked with systemd's own tools.

`systemd-analyze` works without systemd running, so these run on the host. The install
tests run packaging/install.sh for real (a virtualenv and pip, which needs the package
index or the pip configuration of the machine) into temporary roots.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
UNIT_FILE = CHECKOUT / "packaging" / "systemd" / "memdoor@.service"
INSTALL = CHECKOUT / "packaging" / "install.sh"
EXAMPLE = CHECKOUT / "etc" / "memdoor" / "example.toml"
INSTALLED_UNIT = "usr/local/lib/systemd/system/memdoor@.service"
MAX_EXPOSURE = 1.5


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is missing (Debian package: systemd)")
    return path


def _directives(text: str) -> dict[str, list[str]]:
    """Key -> every value assigned to it, in order (systemd allows repeats)."""
    directives: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            directives.setdefault(key, []).append(value)
    return directives


def _install(*args: str) -> subprocess.CompletedProcess[str]:
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("install.sh needs /usr/bin/python3 (Debian package python3)")
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=900, check=False
    )


def _installed_ok(*args: str) -> str:
    result = _install(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _tree(root: Path, opaque: str = "") -> dict[str, str]:
    """Relative path -> content digest ("dir" for directories, the target for symlinks).

    Files under `opaque` count by name only: a reinstall rewrites the venv's files (the
    .pyc files record their source's mtime), and that is not a difference in what is
    installed.
    """
    tree = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        if path.is_symlink():
            tree[relative] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            tree[relative] = "dir"
        elif opaque and relative.startswith(opaque):
            tree[relative] = "file"
        else:
            tree[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def test_every_directive_is_preceded_by_a_comment() -> None:
    lines = UNIT_FILE.read_text().splitlines()
    uncommented = [
        line
        for previous, line in zip(["#", *lines], lines)
        if line and not line.startswith(("#", "[")) and not previous.startswith("#")
    ]
    assert uncommented == []


def test_unit_has_the_contract_the_daemon_relies_on() -> None:
    directives = _directives(UNIT_FILE.read_text())
    expected = {
        "Type": ["notify"],
        "NotifyAccess": ["main"],
        "ExecStart": ["/opt/memdoor/bin/memdoor run --config /etc/memdoor/%i.toml"],
        "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "WatchdogSec": ["30s"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": ["78"],
        "DynamicUser": ["yes"],
        "CapabilityBoundingSet": ["CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_SYSLOG"],
        "AmbientCapabilities": ["CAP_SYS_PTRACE CAP_DAC_READ_SEARCH CAP_SYSLOG"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "PrivateNetwork": ["yes"],
        "RestrictAddressFamilies": ["AF_UNIX"],
        "SystemCallFilter": ["@system-service", "~@privileged @resources"],
        "MemoryDenyWriteExecute": ["yes"],
    }
    assert {key: directives.get(key) for key in expected} == expected
    # /proc/meminfo, /proc/pressure and /proc/vmstat must stay visible.
    assert directives.get("ProcSubset", ["all"]) == ["all"]


def test_unit_lets_memdoor_read_the_kernel_log_and_nothing_more_of_it() -> None:
    """The OOM killer's report in /dev/kmsg is the evidence that outlives a unit's cgroup
    (see the unit's CAP_SYSLOG comment): ProtectKernelLogs= would hide it, PrivateDevices=
    leaves it out unless bound in, DevicePolicy=closed refuses it unless allowed."""
    directives = _directives(UNIT_FILE.read_text())
    kernel_log = {
        "ProtectKernelLogs": None,
        "PrivateDevices": ["yes"],
        "BindReadOnlyPaths": ["-/dev/kmsg"],
        "BindPaths": None,
        "DevicePolicy": ["closed"],
        "DeviceAllow": ["/dev/kmsg r"],
        "InaccessiblePaths": ["-/proc/kmsg -/proc/kallsyms"],
    }
    assert {key: directives.get(key) for key in kernel_log} == kernel_log


def test_security_exposure_is_at_most_1_5() -> None:
    analyze = _require("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(UNIT_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for memdoor@\S*: (\d+\.\d+)", output)
    assert match is not None, output
    assert float(match.group(1)) <= MAX_EXPOSURE, output


@pytest.fixture(scope="module")
def installed_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """memdoor installed with the default prefix into an empty temporary root."""
    root = tmp_path_factory.mktemp("install-root")
    _installed_ok("--root", str(root))
    yield root
    shutil.rmtree(root)


def _verify_with_opt_from(root: Path, unit: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of a unit file, seeing root/opt as /opt.

    verify checks that ExecStart='s binary exists; it has to find /opt/memdoor/bin/memdoor
    where the unit says, and --root= would make it look for /bin/kill and sysinit.target in
    the temporary root as well. A private mount namespace gives it the installed venv at the
    real path, and leaves the host's /opt alone.
    """
    script = 'mount --bind "$1/opt" /opt && exec systemd-analyze verify --man=no "$2"'
    arguments = [str(root), str(unit)]
    return subprocess.run(
        ["unshare", "--mount", "--propagation=private", "sh", "-c", script, "sh", *arguments],
        capture_output=True,
        text=True,
        check=False,
    )


def test_verify_of_the_installed_unit_is_clean(installed_root: Path) -> None:
    _require("systemd-analyze")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare to show the temporary install at /opt")
    unit = installed_root / INSTALLED_UNIT
    assert unit.read_text() == UNIT_FILE.read_text()

    result = _verify_with_opt_from(installed_root, unit)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")

    # The same check against an empty /opt fails: verify really looks at the binary.
    empty = installed_root.parent / "empty-root"
    (empty / "opt").mkdir(parents=True)
    try:
        missing = _verify_with_opt_from(empty, unit)
    finally:
        shutil.rmtree(empty)
    assert missing.returncode != 0
    assert "/opt/memdoor/bin/memdoor" in missing.stderr


def test_installed_venv_runs_memdoor(installed_root: Path) -> None:
    result = subprocess.run(
        [str(installed_root / "opt/memdoor/bin/memdoor"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("memdoor")
    assert (installed_root / "etc/memdoor/example.toml").read_bytes() == EXAMPLE.read_bytes()


def test_install_is_idempotent_and_uninstall_removes_exactly_it(tmp_path: Path) -> None:
    # Like every real host, the root has an /etc; everything else is install's doing.
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    before = _tree(root)
    prefix = "/srv/memdoor-test"

    _installed_ok("--root", str(root), "--prefix", prefix)
    first = _tree(root, opaque=prefix.lstrip("/"))
    unit = (root / INSTALLED_UNIT).read_text()
    assert f"ExecStart={prefix}/bin/memdoor run --config /etc/memdoor/%i.toml" in unit
    # An administrator edits the example; a second run must keep the edit and change
    # nothing else.
    edited = "# edited by the administrator\n"
    (root / "etc/memdoor/example.toml").write_text(edited)

    second_output = _installed_ok("--root", str(root), "--prefix", prefix)
    assert "unchanged: /usr/local/lib/systemd/system/memdoor@.service" in second_output
    assert "kept the existing /etc/memdoor/example.toml" in second_output
    second = _tree(root, opaque=prefix.lstrip("/"))
    assert second.pop("etc/memdoor/example.toml") != first.pop("etc/memdoor/example.toml")
    assert second == first
    assert (root / "etc/memdoor/example.toml").read_text() == edited

    _installed_ok("--uninstall", "--root", str(root), "--prefix", prefix)
    assert _tree(root) == {
        "etc": "dir",
        "etc/memdoor": "dir",
        "etc/memdoor/example.toml": hashlib.sha256(edited.encode()).hexdigest(),
    }

    _installed_ok("--uninstall", "--purge", "--root", str(root), "--prefix", prefix)
    assert _tree(root) == before


def test_uninstall_without_an_installation_removes_nothing(tmp_path: Path) -> None:
    (tmp_path / "etc/memdoor").mkdir(parents=True)
    result = _install("--uninstall", "--root", str(tmp_path))
    assert result.returncode != 0
    assert "no memdoor installation" in result.stderr
    assert (tmp_path / "etc/memdoor").is_dir()


def test_install_refuses_a_prefix_that_is_not_its_own(tmp_path: Path) -> None:
    foreign = tmp_path / "opt/memdoor/precious"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("not ours")
    result = _install("--root", str(tmp_path))
    assert result.returncode != 0
    assert "is not a memdoor installation" in result.stderr
    assert foreign.read_text() == "not ours"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "opt",
        "opt/memdoor",
        "opt/memdoor/precious",
    ]


def test_install_puts_memdoor_on_path_with_its_man_pages_and_completion(
    installed_root: Path,
) -> None:
    link = installed_root / "usr/local/bin/memdoor"
    assert os.readlink(link) == "/opt/memdoor/bin/memdoor"
    installed = {
        "usr/local/share/man/man8/memdoor.8": "packaging/man/memdoor.8",
        "usr/local/share/man/man5/memdoor.toml.5": "packaging/man/memdoor.toml.5",
        "usr/local/share/bash-completion/completions/memdoor": "packaging/completion/memdoor",
    }
    for there, here in installed.items():
        assert (installed_root / there).read_bytes() == (CHECKOUT / here).read_bytes(), there
    manifest = (installed_root / "opt/memdoor/memdoor-install.manifest").read_text().split()
    assert {"/usr/local/bin/memdoor", *(f"/{there}" for there in installed)} <= set(manifest)


def test_install_stops_before_replacing_someone_elses_memdoor_command(tmp_path: Path) -> None:
    theirs = tmp_path / "usr/local/bin/memdoor"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("#!/bin/sh\n")
    result = _install("--root", str(tmp_path))
    assert result.returncode != 0
    assert "/usr/local/bin/memdoor exists and is not memdoor's link" in result.stderr
    assert theirs.read_text() == "#!/bin/sh\n"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == [
        "usr",
        "usr/local",
        "usr/local/bin",
        "usr/local/bin/memdoor",
    ]
