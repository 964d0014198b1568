"""slotted(): a frozen dataclass made again with __slots__, the same in every other way."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from typing import Optional

import pytest

from memdoor.collect.cgroup import MemoryCgroup
from memdoor.collect.identity import ProcessIdentity, ProcessTask
from memdoor.collect.liveness import Liveness, Verdict
from memdoor.procfs.stat import ProcStat
from memdoor.slotted import slotted


@slotted
@dataclass(frozen=True)
class Point:
    x: int
    label: str = "origin"
    note: Optional[str] = None

    @property
    def twice(self) -> int:
        return 2 * self.x


def test_a_slotted_class_has_no_instance_dict_and_keeps_its_defaults() -> None:
    point = Point(3)
    assert not hasattr(point, "__dict__")
    assert Point.__slots__ == ("x", "label", "note")
    assert (point.label, point.note, point.twice) == ("origin", None, 6)
    assert point == Point(3, "origin") and point != Point(3, "other")
    assert hash(point) == hash(Point(3))
    assert repr(point) == "Point(x=3, label='origin', note=None)"
    assert dataclasses.replace(point, label="moved") == Point(3, "moved")


def test_a_slotted_class_stays_frozen_and_refuses_new_attributes() -> None:
    point = Point(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):
        point.other = 1  # type: ignore[attr-defined]
    assert point.x == 1


def test_a_slotted_class_pickles_back_equal() -> None:
    point = Point(5, "five", "kept")
    assert pickle.loads(pickle.dumps(point, pickle.HIGHEST_PROTOCOL)) == point
    assert pickle.loads(pickle.dumps(point, 2)) == point


STAT = ProcStat(42, "app", "S", 1, 123456, 4194304, 0)


@pytest.mark.parametrize(
    "value",
    [
        STAT,
        ProcessTask(42, "/proc", STAT),
        Liveness(Verdict.SAME, STAT, "", ProcessTask(42, "/proc", STAT)),
        Liveness(Verdict.EXITED, None, "gone"),
        ProcessIdentity(42, 1, "app", 123456, 1.5, "/usr/bin/app", False, ["app", "-x"]),
        MemoryCgroup(1, "/sys/fs/cgroup/memory/a", "/sys/fs/cgroup/memory", "/a"),
    ],
)
def test_what_each_watched_process_keeps_is_slotted(value: object) -> None:
    assert not hasattr(value, "__dict__")
    assert pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL)) == value
