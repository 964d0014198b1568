"""Frozen dataclasses with __slots__, on every Python memdoor runs on.

A thousand watched processes each keep a few small frozen dataclasses (a stat,
a verdict, its task, an identity, a cgroup). With an instance dict each costs
about half as much again as its fields (3.11), twice as much on 3.9 and 3.10;
with slots, only its fields. dataclass(slots=True) does this from Python 3.10;
slotted() does the same on 3.9: it makes the class again with __slots__ and
without the defaults' class attributes (which the generated __init__ holds
already), and gives it the pickle methods a frozen class needs (unpickling
would otherwise set the fields through the __setattr__ that refuses them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

Class = TypeVar("Class", bound=type)


def _fields_state(self: Any) -> list[Any]:
    return [getattr(self, field.name) for field in dataclasses.fields(self)]


def _set_fields_state(self: Any, state: list[Any]) -> None:
    for field, value in zip(dataclasses.fields(self), state):
        object.__setattr__(self, field.name, value)


def slotted(cls: Class) -> Class:
    """cls, a frozen dataclass (applied after @dataclass), made again with __slots__.

    Its methods must not use super() or __class__: they would name the class
    made first.
    """
    names = tuple(field.name for field in dataclasses.fields(cls))
    body = {key: value for key, value in cls.__dict__.items() if key not in names}
    body.pop("__dict__", None)
    body.pop("__weakref__", None)
    body["__slots__"] = names
    body["__getstate__"] = _fields_state
    body["__setstate__"] = _set_fields_state
    made: Class = type(cls)(cls.__name__, cls.__bases__, body)
    return made
