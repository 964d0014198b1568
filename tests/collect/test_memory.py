from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from memdoor.collect.memory import (
    PAGE_KB,
    MemoryFigures,
    build_memory_figures,
    read_meminfo,
    read_rollup,
    read_rss_kb,
    read_status,
)
from memdoor.collect.reading import Unreadable
from memdoor.procfs.meminfo import MemInfo
from memdoor.procfs.smaps import MemoryRollup
from memdoor.procfs.status import ProcStatus
from memdoor.vocabulary import percent_of
from tests.collect.trees import COMPLETE, MALFORMED_STATUS, MISSING, MODERN, OLD_KERNEL, deny
from tests.workload_fixture import SpawnWorkload

MEMINFO = MemInfo(total_kb=24683656, available_kb=24395196)


def status_field_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_read_meminfo() -> None:
    assert read_meminfo(MODERN) == MEMINFO
    assert read_meminfo(OLD_KERNEL) == MemInfo(MEMINFO.total_kb, None)


def test_read_meminfo_missing(tmp_path: Path) -> None:
    result = read_meminfo(str(tmp_path))
    assert isinstance(result, Unreadable) and result.reason == "vanished"


def test_read_rss_kb_is_statm_resident_pages() -> None:
    assert read_rss_kb(COMPLETE, MODERN) == 376 * PAGE_KB


def test_read_rss_kb_malformed(tmp_path: Path) -> None:
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "statm").write_text("625\n")
    result = read_rss_kb(5, str(tmp_path))
    assert isinstance(result, Unreadable) and result.reason == "malformed"
    missing = read_rss_kb(MISSING, MODERN)
    assert isinstance(missing, Unreadable) and missing.reason == "vanished"


def test_read_status() -> None:
    status = read_status(COMPLETE, MODERN)
    assert isinstance(status, ProcStatus)
    assert (status.vm_rss_kb, status.rss_anon_kb) == (1504, 96)
    old = read_status(COMPLETE, OLD_KERNEL)
    assert isinstance(old, ProcStatus)
    assert (old.vm_rss_kb, old.rss_anon_kb) == (1504, None)


def test_read_status_malformed() -> None:
    result = read_status(MALFORMED_STATUS, MODERN)
    assert isinstance(result, Unreadable)
    assert (result.what, result.reason) == (f"{MODERN}/{MALFORMED_STATUS}/status", "malformed")
    assert "VmRSS" in result.detail


def test_read_rollup_prefers_smaps_rollup() -> None:
    result = read_rollup(COMPLETE, MODERN)
    assert isinstance(result, tuple)
    rollup, source = result
    assert source == "smaps_rollup"
    assert (rollup.rss_kb, rollup.pss_kb, rollup.pss_anon_kb) == (1504, 301, 96)


def test_read_rollup_sums_smaps_on_a_kernel_without_smaps_rollup() -> None:
    result = read_rollup(COMPLETE, OLD_KERNEL)
    assert isinstance(result, tuple)
    rollup, source = result
    assert source == "smaps"
    # Column sums of the recorded smaps; no Pss_Anon split before 5.5.
    assert (rollup.rss_kb, rollup.pss_kb, rollup.uss_kb) == (1504, 299, 36 + 96)
    assert rollup.pss_anon_kb is None


def test_read_rollup_of_a_missing_process() -> None:
    result = read_rollup(MISSING, MODERN)
    assert isinstance(result, Unreadable)
    assert (result.what, result.reason) == (f"{MODERN}/{MISSING}/smaps_rollup", "vanished")


def test_read_rollup_denied_does_not_fall_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """smaps is as protected as smaps_rollup; reading it would only be a second refusal."""
    deny(monkeypatch, f"{MODERN}/{COMPLETE}/smaps_rollup")
    result = read_rollup(COMPLETE, MODERN)
    assert isinstance(result, Unreadable) and result.reason == "denied"


def test_build_memory_figures_takes_rss_from_status_and_pss_from_rollup() -> None:
    status = read_status(COMPLETE, MODERN)
    rollup = read_rollup(COMPLETE, MODERN)
    assert isinstance(status, ProcStatus) and isinstance(rollup, tuple)
    figures = build_memory_figures(MEMINFO, status, *rollup)
    assert figures == MemoryFigures(
        mem_total_kb=24683656,
        mem_available_kb=24395196,
        rss_kb=1504,
        rss_anon_kb=96,
        rss_file_kb=1408,
        rss_shmem_kb=0,
        pss_kb=301,
        uss_kb=132,
        swap_kb=0,
        page_tables_kb=44,
        rollup_source="smaps_rollup",
    )
    assert figures.usage_percent == pytest.approx(1504 * 100 / 24683656)


def test_build_memory_figures_with_nothing_but_meminfo() -> None:
    figures = build_memory_figures(MEMINFO, None, None, "smaps_rollup")
    assert dataclasses.astuple(figures)[2:] == (None,) * 9
    assert figures.usage_percent is None


def test_swap_falls_back_to_the_rollup_without_status() -> None:
    rollup = MemoryRollup(10, 5, 0, 0, 5, 5, 0, swap_kb=7, swap_pss_kb=7)
    assert build_memory_figures(MEMINFO, None, rollup, "smaps").swap_kb == 7


def test_usage_percent() -> None:
    assert percent_of(512, 1024) == 50.0
    assert percent_of(0, 1024) == 0.0


def test_real_process_rss(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload("--touch-mb", 64)
    rss = read_rss_kb(workload.pid)
    vm_rss = status_field_kb(workload.pid, "VmRSS")
    assert isinstance(rss, int)
    # The workload holds still: statm and status agree to a few pages.
    assert abs(rss - vm_rss) <= 64
    assert rss >= 64 * 1024
    status = read_status(workload.pid)
    assert isinstance(status, ProcStatus) and status.vm_rss_kb is not None
    assert abs(status.vm_rss_kb - vm_rss) <= 64
