from __future__ import annotations

from pathlib import Path

import pytest

from memdoor.collect.mappings import read_mappings
from memdoor.collect.reading import Unreadable
from memdoor.procfs.maps import parse_maps
from tests.collect.trees import COMPLETE, MISSING, MODERN, OLD_KERNEL, TRUNCATED_SMAPS, deny


def recorded_maps() -> list[object]:
    return list(parse_maps(Path(f"{MODERN}/{COMPLETE}/maps").read_bytes()))


def test_smaps_gives_mappings_with_rss() -> None:
    problems: list[Unreadable] = []
    mappings = read_mappings(COMPLETE, problems, MODERN)
    assert problems == []
    assert mappings is not None
    assert [m._replace(rss_kb=None) for m in mappings] == recorded_maps()
    assert all(m.rss_kb is not None for m in mappings)
    assert sum(m.rss_kb or 0 for m in mappings) == 1504


def test_old_kernel_smaps() -> None:
    problems: list[Unreadable] = []
    mappings = read_mappings(COMPLETE, problems, OLD_KERNEL)
    assert problems == []
    assert mappings is not None and len(mappings) == 24


def test_truncated_smaps_falls_back_to_maps() -> None:
    """A cut smaps is reported, and maps still gives every mapping, without resident sizes."""
    problems: list[Unreadable] = []
    mappings = read_mappings(TRUNCATED_SMAPS, problems, MODERN)
    assert [(p.what, p.reason) for p in problems] == [
        (f"{MODERN}/{TRUNCATED_SMAPS}/smaps", "malformed")
    ]
    assert mappings == recorded_maps()


def test_denied_smaps_falls_back_to_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    deny(monkeypatch, f"{MODERN}/{COMPLETE}/smaps")
    problems: list[Unreadable] = []
    mappings = read_mappings(COMPLETE, problems, MODERN)
    assert [(p.what, p.reason) for p in problems] == [(f"{MODERN}/{COMPLETE}/smaps", "denied")]
    assert mappings == recorded_maps()


def test_both_denied(monkeypatch: pytest.MonkeyPatch) -> None:
    deny(monkeypatch, f"{MODERN}/{COMPLETE}/smaps", f"{MODERN}/{COMPLETE}/maps")
    problems: list[Unreadable] = []
    assert read_mappings(COMPLETE, problems, MODERN) is None
    assert [p.reason for p in problems] == ["denied", "denied"]


def test_vanished_process_does_not_try_maps() -> None:
    problems: list[Unreadable] = []
    assert read_mappings(MISSING, problems, MODERN) is None
    assert [(p.what, p.reason) for p in problems] == [(f"{MODERN}/{MISSING}/smaps", "vanished")]
