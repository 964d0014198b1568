"""packaging/shipping/rsyslog-memdoor.conf against a real journald holding real memdoor records.

rsyslogd runs with the recipe as shipped (only the output path changed), its
own work directory, state file and pid file under tmp_path, inside the private
journald's mount namespace so imjournal reads that journal and not the host's.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
RECIPE = REPO / "packaging" / "shipping" / "rsyslog-memdoor.conf"


@dataclass(frozen=True)
class Journal:
    journald: RealJournald
    records: list[dict[str, Any]]


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Journal]:
    """Small records and multi-MB ones (detail = "full", 20,000 mappings) from one real OOM kill."""
    if shutil.which("rsyslogd") is None:
        pytest.skip("rsyslogd is missing (Debian package: rsyslog)")
    tmp = tmp_path_factory.mktemp("rsyslog")
    with running_journald(tmp) as journald:
        run = record_oom_kill(
            tmp, journald.socket_path, [Watch("small"), Watch("big", "full")], MANY_MAPPINGS
        )
        yield Journal(journald, run.records)


def rsyslog_argv(tmp_path: Path, output: Path) -> list[str]:
    """rsyslogd in the foreground with the recipe and nothing of the host's configuration."""
    work = tmp_path / "rsyslog-work"
    work.mkdir(exist_ok=True)
    recipe = tmp_path / "rsyslog-memdoor.conf"
    recipe.write_text(recipe_for_test(RECIPE, output), encoding="utf-8")
    main = tmp_path / "rsyslog.conf"
    main.write_text(f'global(workDirectory="{work}")\ninclude(file="{recipe}")\n', encoding="utf-8")
    return ["rsyslogd", "-n", "-f", str(main), "-i", str(tmp_path / "rsyslogd.pid")]


def test_every_record_arrives_whole_and_once_across_a_restart(
    journal: Journal, tmp_path: Path
) -> None:
    output = tmp_path / "records.jsonl"
    log = tmp_path / "rsyslogd.log"
    argv = rsyslog_argv(tmp_path, output)
    sizes = [len(json.dumps(record)) for record in journal.records]
    assert min(sizes) < 1000 and max(sizes) > 2_000_000, sizes

    with shipper_running(journal.journald, argv, log) as rsyslogd:
        wait_for_lines(output, len(journal.records), rsyslogd, log)
    assert shipped_records(output) == journal.records

    # Restarted with its state file, rsyslog must resume after what it shipped.
    more = record_idle_run(tmp_path, journal.journald.socket_path)
    with shipper_running(journal.journald, argv, log) as rsyslogd:
        wait_for_lines(output, len(journal.records) + len(more), rsyslogd, log)
    assert shipped_records(output) == journal.records + more
    assert (tmp_path / "rsyslog-work" / "memdoor-imjournal.state").is_file()
