"""What is wrong with a config file, in the words of the operator editing it.

Why every problem is collected before raising: the operator edits this file on a
server, often through a config-management run; reporting one mistake per attempt
turns a typo hunt into a dozen restarts. TOML parsers give no line numbers for
values, so each problem is located by its key path plus the target's name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from memdoor.config.schema import (
    SELECTOR_KEYS,
    Config,
    DaemonConfig,
    JournaldSettings,
    SinksConfig,
    StdoutSettings,
    TargetConfig,
    duplicate_names,
    owner_problems,
    selector_problem,
)
from memdoor.config.toml_text import shorten, show, toml_string

Loc = tuple[Union[str, int], ...]

# A config_invalid record names this many problems, each key and reason cut to
# RECORDED_TEXT_LIMIT characters: enough to fix a file in a few rounds, and the
# record stays one line below 16 KiB, where Docker and CRI runtimes split stdout
# (journald's LineMax is 48 KiB) however many problems the file has.
RECORDED_PROBLEMS = 20
RECORDED_TEXT_LIMIT = 160

# Cross-field checks run on the raw tables (see _cross_field_problems); the model
# validators raising these only guard configs built in Python code.
_CROSS_FIELD_ERRORS = frozenset({"selector_count", "key_of_another_kind", "duplicate_name"})


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with the file.

    key_path is empty when the problem concerns the whole file (unreadable, not
    UTF-8, not TOML, an unknown top-level key).
    """

    key_path: str
    reason: str

    def describe(self, path: str) -> str:
        if not self.key_path:
            return f"{path}: {self.reason}"
        return f"{path}: {self.key_path}: {self.reason}"


class ConfigError(Exception):
    """Every problem found in one config file.

    str() gives one line per problem, all of them, for the operator's terminal;
    message() and record_fields() give the bounded view a single log record needs.
    """

    def __init__(self, path: str, problems: Sequence[ConfigProblem]) -> None:
        super().__init__(path, list(problems))
        self.path = path
        self.problems = list(problems)

    def __str__(self) -> str:
        return "\n".join(problem.describe(self.path) for problem in self.problems)

    def message(self, consequence: str) -> str:
        """The config_invalid record's human line: what happens because of the file
        (consequence), then the recorded problems and how many were left out."""
        recorded, left_out = self._recorded()
        described = [problem.describe(self.path) for problem in recorded]
        if left_out:
            described.append(f"… and {left_out} more")
        return f"{self.path}: invalid configuration, {consequence}: " + "; ".join(described)

    def record_fields(self) -> dict[str, Any]:
        """The config_invalid record's own fields: the file, each recorded key with its
        reason, and more_errors when problems were left out."""
        recorded, left_out = self._recorded()
        fields: dict[str, Any] = {
            "file": self.path,
            "errors": [{"key": problem.key_path, "reason": problem.reason} for problem in recorded],
        }
        if left_out:
            fields["more_errors"] = left_out
        return fields

    def _recorded(self) -> tuple[list[ConfigProblem], int]:
        """The first RECORDED_PROBLEMS problems, cut short, and the count left out."""
        recorded = [
            ConfigProblem(
                shorten(problem.key_path, RECORDED_TEXT_LIMIT),
                shorten(problem.reason, RECORDED_TEXT_LIMIT),
            )
            for problem in self.problems[:RECORDED_PROBLEMS]
        ]
        return recorded, len(self.problems) - len(recorded)


def whole_file_problem(path: str, reason: str) -> ConfigError:
    """The error for a file that could not be read, decoded or parsed at all."""
    return ConfigError(path, [ConfigProblem("", reason)])


def validation_problems(error: ValidationError, raw: dict[str, Any]) -> list[ConfigProblem]:
    """pydantic's errors for the parsed file `raw`, in operator words, grouped by table."""
    errors = [e for e in error.errors(include_url=False) if e["type"] not in _CROSS_FIELD_ERRORS]
    located = [_translate(e) for e in errors] + _cross_field_problems(raw)
    located.sort(key=lambda item: _section_order(item[0]))
    return [ConfigProblem(_key_path(loc, raw), reason) for loc, reason in located]


def _cross_field_problems(raw: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Pydantic skips a model's after-validators once any of its fields failed, which
    would hide these problems until the operator fixed the others; checking the raw
    tables reports them in the same run, at the exact key."""
    targets = raw.get("target")
    if not isinstance(targets, list):
        return []
    problems: list[tuple[Loc, str]] = []
    names: list[object] = []
    for index, target in enumerate(targets):
        if not isinstance(target, dict):
            names.append(None)
            continue
        names.append(target.get("name"))
        problem = selector_problem([key for key in SELECTOR_KEYS if key in target])
        if problem is not None:
            problems.append((("target", index), problem))
        problems.extend(
            (("target", index, key), reason) for key, reason in owner_problems(list(target))
        )
    problems.extend((("target", index, "name"), reason) for index, reason in duplicate_names(names))
    return problems


_EXPECTED = {
    "int_type": "expected an integer",
    "float_type": "expected a number",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "tuple_type": "expected an array",
    "list_type": "expected an array",
    "model_type": "expected a table",
    "dict_type": "expected a table",
}

_BOUNDS = {
    "greater_than": ("gt", "must be greater than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}


def _translate(error: ErrorDetails) -> tuple[Loc, str]:
    """Turn pydantic's messages into the words an operator editing TOML would use;
    anything not covered keeps pydantic's own message."""
    kind = error["type"]
    loc = tuple(error["loc"])
    ctx = error.get("ctx", {})
    if kind == "missing":
        return loc, "is required"
    if kind == "extra_forbidden":
        return loc[:-1], _unknown_key(loc)
    if loc == ("target",) and kind == "tuple_type":
        # `[target]` instead of `[[target]]` is the likely slip here.
        reason = "expected an array of tables, written [[target]]"
    elif kind in _EXPECTED:
        reason = _EXPECTED[kind]
    elif kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        reason = f"{words} {ctx[bound]}"
    elif kind == "too_short" and ctx.get("min_length") == 1:
        reason = "must not be empty"
    elif kind == "literal_error":
        reason = f"must be one of {ctx['expected']}"
    elif kind == "finite_number":
        reason = "must be a finite number"
    else:
        reason = error["msg"]
    return loc, f"{reason} (got {show(error['input'])})"


def _unknown_key(loc: Loc) -> str:
    key = str(loc[-1])
    table = _TABLES.get(tuple(part for part in loc[:-1] if isinstance(part, str)))
    if table is None:
        return f"unknown key {key!r}"
    known = [field.alias or name for name, field in table.model_fields.items()]
    # Only a file with a mistake needs it: a running daemon does not keep difflib.
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


_TABLES: dict[tuple[str, ...], type[BaseModel]] = {
    (): Config,
    ("daemon",): DaemonConfig,
    ("sinks",): SinksConfig,
    ("sinks", "stdout"): StdoutSettings,
    ("sinks", "journald"): JournaldSettings,
    ("target",): TargetConfig,
}

_TOP_LEVEL_ORDER = {"daemon": 1, "sinks": 2, "target": 3}


def _section_order(loc: Loc) -> tuple[int, int]:
    """Group problems by table, targets in file order; the sort is stable, so within a
    group pydantic's order (the order of the keys in the schema) is kept."""
    if not loc or not isinstance(loc[0], str):
        return (0, 0)
    index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else -1
    return (_TOP_LEVEL_ORDER.get(loc[0], 0), index)


def _key_path(loc: Loc, raw: dict[str, Any]) -> str:
    """`target[1] (name="db").threshold`: the index as in the file, plus the name
    because that is what the operator searches for."""
    path = ""
    for position, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
            if position == 1 and loc[0] == "target":
                name = _raw_target_name(raw, part)
                if name is not None:
                    path += f" (name={toml_string(name)})"
        else:
            path += f".{part}" if path else part
    return path


def _raw_target_name(raw: dict[str, Any], index: int) -> Optional[str]:
    targets = raw.get("target")
    if isinstance(targets, list) and isinstance(targets[index], dict):
        name = targets[index].get("name")
        if isinstance(name, str):
            return name
    return None
