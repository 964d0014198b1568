"""`memdoor show` reading a real journald: the records of a real OOM kill, read back with
journalctl inside the private journald's mount namespace, where its journalctl looks."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from memdoor.lab.private_journald import RealJournald, running_journald
from memdoor.lab.python_child import IMPORT_ROOT, module_command
from tests.shipping.real_records import Watch, record_oom_kill
from tests.views.test_show_pty import EVENT_AT


def show_in(journald: RealJournald, *args: str) -> subprocess.CompletedProcess[str]:
    """nsenter starts the command in the namespace's working directory: the import path
    must lead to this memdoor, not to whatever the interpreter would find there."""
    journald.sync()
    return subprocess.run(
        journald.in_namespace(module_command("memdoor", "show", *args)),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(IMPORT_ROOT)},
        timeout=120,
        check=False,
    )


def lines(result: subprocess.CompletedProcess[str]) -> Sequence[str]:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_show_reads_the_kill_from_the_journal(tmp_path: Path) -> None:
    with running_journald(tmp_path) as journald:
        oom = record_oom_kill(
            tmp_path, journald.socket_path, [Watch("hog"), Watch("hogfull", "full")]
        )

        records = lines(show_in(journald))
        kills = lines(show_in(journald, "--kills"))
        only_hog = lines(show_in(journald, "--target", "hog", "--event", "oom_killed"))
        post_mortem = show_in(journald, "--kill", "latest", "--target", "hog")
        hog_samples = lines(show_in(journald, "-t", "hog", "-e", "sample", "--since=-1h"))
        future = lines(show_in(journald, "--since=+1h"))
        bad_since = show_in(journald, "--since", "not a time")

    assert len(records) == len(oom.records), "every record, the multi-MB ones too (--all)"
    assert [line[EVENT_AT:].split()[0] for line in records] == [r["event"] for r in oom.records]
    assert len(kills) == 3 and kills[0].split()[0] == "#"
    # Both targets watch the victim; which of them told its kill first is not fixed.
    for row, target in zip(sorted(kills[1:], key=lambda row: row.split()[3]), ("hog", "hogfull")):
        assert row.split()[3:6] == [target, str(oom.victim_pid), "python"], row
    assert len(only_hog) == 1 and "oom_killed" in only_hog[0] and " hog " in only_hog[0]
    assert post_mortem.returncode == 0, post_mortem.stderr
    text = post_mortem.stdout
    assert text.startswith(
        f"Kill 1 of 1: hog pid {oom.victim_pid} (python) killed by the OOM killer"
    )
    assert "Trajectory\n" in text and "✕" in text
    assert "Top mapping groups by resident size" in text
    expected_samples = [r for r in oom.records if r["event"] == "sample" and r["target"] == "hog"]
    assert len(hog_samples) == len(expected_samples)
    assert future == []
    assert bad_since.returncode == 1 and "journalctl failed" in bad_since.stderr


def test_without_journalctl_show_says_so(tmp_path: Path) -> None:
    result = subprocess.run(
        module_command("memdoor", "show"),
        capture_output=True,
        text=True,
        cwd=IMPORT_ROOT,
        env={"PATH": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (69, "")
    assert result.stderr.startswith("memdoor show: cannot run journalctl: ")
