"""packaging/shipping/syslog-ng-memdoor.conf against a real journald holding real memdoor records.

The recipe is a drop-in for Debian's syslog-ng.conf: it reads from Debian's
source s_src, whose system() the recipe says to replace with a
systemd-journal() carrying max-field-size() (syslog-ng allows one journal
source). The test's main configuration is that edited s_src and the recipe as
shipped (only the output path changed); with the unedited source, what
system() means on a systemd host, full records are cut, which a test shows.

syslog-ng runs with its own persist, pid and control files under tmp_path,
inside the private journald's mount namespace so systemd-journal() reads that
journal and not the host's. Debian's syslog-ng-core conflicts with rsyslog, so
where it is not installed the test uses the copy
tests/shipping/install_syslog_ng.sh unpacks.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytest

from memdoor.lab.private_journald import RealJournald, running_journald
from tests.shipping.real_records import MANY_MAPPINGS, Watch, record_idle_run, record_oom_kill
from tests.shipping.shippers import (
    recipe_for_test,
    shipped_records,
    shipper_running,
    wait_for_lines,
)

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "packaging" / "shipping" / "syslog-ng-memdoor.conf"
UNPACKED = Path("/opt/memdoor-test/syslog-ng")
# The s_src the recipe asks for, and the one system() is on a systemd host.
EDITED_SOURCE = "systemd-journal(max-field-size(67108864));"
STOCK_SOURCE = "systemd-journal();"
DEFAULT_MAX_FIELD_SIZE = 65536


@dataclass(frozen=True)
class SyslogNg:
    """How to run one syslog-ng: its argv prefix and environment."""

    argv: list[str]
    env: Optional[dict[str, str]]


def find_syslog_ng() -> SyslogNg:
    installed = shutil.which("syslog-ng")
    if installed is not None:
        return SyslogNg([installed], None)
    binary = UNPACKED / "usr" / "sbin" / "syslog-ng"
    modules = sorted((UNPACKED / "usr" / "lib" / "syslog-ng").glob("3.*"))
    if not os.access(binary, os.X_OK) or not modules:
        pytest.skip(
            "syslog-ng is missing: install Debian's syslog-ng-core, or (next to rsyslog, which "
            "it conflicts with) run tests/shipping/install_syslog_ng.sh"
        )
    env = {**os.environ, "LD_LIBRARY_PATH": str(UNPACKED / "usr" / "lib" / "syslog-ng")}
    return SyslogNg([str(binary), f"--module-path={modules[-1]}"], env)


@dataclass(frozen=True)
class Journal:
    journald: RealJournald
    records: list[dict[str, Any]]
    syslog_ng: SyslogNg


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """Small records and multi-MB ones (detail = "full", 20,000 mappings) from one real OOM kill."""
    syslog_ng = find_syslog_ng()
    tmp = tmp_path_factory.mktemp("syslog-ng")
    with running_journald(tmp) as journald:
        run = record_oom_kill(
            tmp, journald.socket_path, [Watch("small"), Watch("big", "full")], MANY_MAPPINGS
        )
        yield Journal(journald, run.records, syslog_ng)


def syslog_ng_argv(syslog_ng: SyslogNg, tmp_path: Path, output: Path, source: str) -> list[str]:
    """syslog-ng in the foreground: Debian's s_src with the given driver, then the recipe."""
    recipe = tmp_path / "syslog-ng-memdoor.conf"
    recipe.write_text(recipe_for_test(RECIPE, output), encoding="utf-8")
    main = tmp_path / "syslog-ng.conf"
    main.write_text(
        f'@version: 3.38\nsource s_src {{ {source} internal(); }};\n@include "{recipe}"\n',
        encoding="utf-8",
    )
    return [
        *syslog_ng.argv,
        "--foreground",
        "--stderr",
        "--no-caps",
        f"--cfgfile={main}",
        f"--persist-file={tmp_path / 'syslog-ng.persist'}",
        f"--pidfile={tmp_path / 'syslog-ng.pid'}",
        f"--control={tmp_path / 'syslog-ng.ctl'}",
    ]


def test_every_record_arrives_whole_and_once_across_a_restart(
    journal: Journal, tmp_path: Path
) -> None:
    output = tmp_path / "records.jsonl"
    log = tmp_path / "syslog-ng.log"
    assert EDITED_SOURCE in RECIPE.read_text(encoding="utf-8")
    argv = syslog_ng_argv(journal.syslog_ng, tmp_path, output, EDITED_SOURCE)
    sizes = [len(json.dumps(record)) for record in journal.records]
    assert min(sizes) < 1000 and max(sizes) > 2_000_000, sizes

    with shipper_running(journal.journald, argv, log, journal.syslog_ng.env) as syslog_ng:
        wait_for_lines(output, len(journal.records), syslog_ng, log)
    assert shipped_records(output) == journal.records

    # Restarted with its persist file, syslog-ng must resume after what it shipped.
    more = record_idle_run(tmp_path, journal.journald.socket_path)
    with shipper_running(journal.journald, argv, log, journal.syslog_ng.env) as syslog_ng:
        wait_for_lines(output, len(journal.records) + len(more), syslog_ng, log)
    assert shipped_records(output) == journal.records + more


def test_with_the_stock_source_large_records_are_cut_at_64_kib(
    journal: Journal, tmp_path: Path
) -> None:
    """Why the recipe asks for max-field-size: the default cuts full snapshots into invalid JSON."""
    output = tmp_path / "records.jsonl"
    log = tmp_path / "syslog-ng.log"
    argv = syslog_ng_argv(journal.syslog_ng, tmp_path, output, STOCK_SOURCE)

    with shipper_running(journal.journald, argv, log, journal.syslog_ng.env) as syslog_ng:
        wait_for_lines(output, len(journal.records), syslog_ng, log)

    # The journal's first records are the OOM run's (another test may have added more since).
    lines = output.read_text(encoding="utf-8").splitlines()[: len(journal.records)]
    expected = [json.dumps(record, separators=(",", ":")) for record in journal.records]
    assert any(len(whole) > DEFAULT_MAX_FIELD_SIZE for whole in expected)
    for line, whole in zip(lines, expected):
        if len(whole) > DEFAULT_MAX_FIELD_SIZE:
            assert len(line) == DEFAULT_MAX_FIELD_SIZE
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
        else:
            assert json.loads(line) == json.loads(whole)
