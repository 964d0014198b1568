"""The journal message catalog: one entry per MESSAGE_ID, accepted by journalctl, shown by -x.

journalctl -x reads the compiled catalog from /var/lib/systemd/catalog/database,
and the host's must not change. So the test compiles the catalog into a
temporary root with `journalctl --root=DIR --update-catalog` and bind-mounts
that root's catalog directory over /var/lib/systemd/catalog inside the private
journald's mount namespace (memdoor/lab/private_journald.py), where journalctl runs: the
namespace is private, so the host never sees the mount, and it goes away with
the namespace.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pytest

from memdoor.events import EVENTS
from memdoor.lab.private_journald import RealJournald, running_journald
from tests.shipping.real_records import Watch, record_oom_kill

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "packaging" / "systemd" / "memdoor.catalog"
HOST_DATABASE = Path("/var/lib/systemd/catalog/database")
CATALOG_DIR = "var/lib/systemd/catalog"
_ENTRY = re.compile(r"^-- ([0-9a-f]{32})$", re.MULTILINE)


def catalog_entries(text: str) -> dict[str, list[str]]:
    """Each catalog id and the header lines of each of its entries, in file order."""
    entries: dict[str, list[str]] = {}
    matches = list(_ENTRY.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip("\n")
        headers = body.split("\n\n", 1)[0].splitlines()
        entries.setdefault(match.group(1), []).append("\n".join(headers))
    return entries


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def host_database_digest() -> Optional[str]:
    if not HOST_DATABASE.exists():
        return None
    return hashlib.sha256(HOST_DATABASE.read_bytes()).hexdigest()


def require_journalctl() -> None:
    if shutil.which("journalctl") is None:
        pytest.skip("journalctl is missing (Debian package: systemd)")


@pytest.fixture
def catalog_root(tmp_path: Path) -> Path:
    """A root whose /usr/lib/systemd/catalog holds only memdoor's catalog, compiled."""
    require_journalctl()
    root = tmp_path / "root"
    source_dir = root / "usr" / "lib" / "systemd" / "catalog"
    source_dir.mkdir(parents=True)
    shutil.copy(CATALOG, source_dir / "memdoor.catalog")
    result = run(["journalctl", f"--root={root}", "--update-catalog"])
    assert result.returncode == 0, result.stderr
    assert (root / CATALOG_DIR / "database").is_file()
    return root


@pytest.fixture
def host_catalog_untouched() -> Iterator[None]:
    before = host_database_digest()
    yield
    assert host_database_digest() == before, f"{HOST_DATABASE} changed"


def test_every_message_id_has_exactly_one_entry_and_every_entry_an_event() -> None:
    entries = catalog_entries(CATALOG.read_text(encoding="utf-8"))

    assert {i: len(e) for i, e in entries.items() if len(e) != 1} == {}
    assert sorted(entries) == sorted(spec.message_id for spec in EVENTS.values())


def test_every_entry_has_subject_defined_by_and_support() -> None:
    entries = catalog_entries(CATALOG.read_text(encoding="utf-8"))

    for catalog_id, (headers,) in entries.items():
        names = [line.split(":", 1)[0] for line in headers.splitlines()]
        assert names == ["Subject", "Defined-By", "Support"], (catalog_id, headers)
        assert "Defined-By: memdoor" in headers.splitlines(), catalog_id
        assert "http" not in headers, catalog_id


def test_journalctl_compiles_the_catalog_and_lists_every_id(
    catalog_root: Path, host_catalog_untouched: None
) -> None:
    listed = run(["journalctl", f"--root={catalog_root}", "--list-catalog"])

    assert listed.returncode == 0, listed.stderr
    ids = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert ids == {spec.message_id for spec in EVENTS.values()}
    for line in listed.stdout.splitlines():
        assert line.split(" ", 1)[1].startswith("memdoor: "), line


def install_catalog(journald: RealJournald, catalog_root: Path) -> None:
    """Mount the compiled catalog where journalctl -x looks, inside journald's namespace only."""
    mount = run(
        journald.in_namespace(
            ["mount", "--bind", str(catalog_root / CATALOG_DIR), f"/{CATALOG_DIR}"]
        )
    )
    assert mount.returncode == 0, mount.stderr


def test_journalctl_x_explains_a_real_oom_killed_entry(
    tmp_path: Path, catalog_root: Path, host_catalog_untouched: None
) -> None:
    with running_journald(tmp_path) as journald:
        oom = record_oom_kill(tmp_path, journald.socket_path, [Watch("hog")])
        install_catalog(journald, catalog_root)

        shown = journald.journalctl("-x", "MEMDOOR_EVENT=oom_killed", "--output=short")

    assert shown.returncode == 0, shown.stderr.decode()
    text = shown.stdout.decode()
    explanation = [line[3:] for line in text.splitlines() if line.startswith("░░ ")]
    assert f"Subject: hog pid {oom.victim_pid} was killed by the OOM killer" in explanation
    assert "Defined-By: memdoor" in explanation
    assert (
        f"The kernel's OOM killer killed pid {oom.victim_pid} of memdoor target hog." in explanation
    )
    assert "  journalctl MEMDOOR_TARGET=hog MEMDOOR_EVENT=oom_killed \\" in explanation
    assert f"  journalctl MEMDOOR_TARGET=hog MEMDOOR_PID={oom.victim_pid} \\" in explanation
