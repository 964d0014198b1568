"""The daemon's configuration: one TOML file validated into frozen, value-compared models.

Why the models are frozen and compared by value: on SIGHUP the daemon loads the file
again and must tell which targets changed, so two loads of an unchanged file have to
give equal, hashable objects.

Why every problem is collected before raising: the operator edits this file on a
server, often through a config-management run; reporting one mistake per attempt
turns a typo hunt into a dozen restarts. TOML parsers give no line numbers for
values, so each problem is located by its key path plus the target's name.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from memdoor.collect.reading import Unreadable, read_bytes
from memdoor.vocabulary import ALL_SECTIONS, Detail, RecordFormat, Section, ThresholdBase

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

# sysexits.h: the exit status that tells systemd (RestartPreventExitStatus=) and
# scripts that restarting will not help until someone fixes the file.
EX_CONFIG = 78

SELECTOR_KEYS = ("pid", "pidfile", "exe")
# Target keys that fall back to the [daemon] key of the same name.
INHERITED_KEYS = (
    "threshold",
    "threshold_base",
    "interval",
    "min_interval",
    "detail",
    "full_snapshot_min_interval",
    "full_snapshot_growth",
    "full_snapshot_on_change",
)

# The kernel's PID_MAX_LIMIT on 64-bit: a larger pid can never match a process,
# so it is a typo rather than a process that has not started yet.
PID_MAX_LIMIT = 4_194_304
# Below this a poll would mostly measure memdoor itself (a snapshot reads dozens of
# /proc files); it bounds daemon.interval too, because targets inherit it.
MIN_INTERVAL = 0.05

_NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

Loc = tuple[Union[str, int], ...]

# Cross-field checks run on the raw tables by the loader (see _cross_field_problems);
# the model validators raising these only guard configs built in Python code.
_CROSS_FIELD_ERRORS = frozenset({"selector_count", "duplicate_name"})


def _tuple_from_array(value: object) -> object:
    """TOML arrays arrive as lists; strict mode will not turn them into the tuples that
    keep frozen models hashable, so convert here and let strict validation do the rest."""
    return tuple(value) if isinstance(value, list) else value


def _between(low: int, high: int) -> AfterValidator:
    """One message naming both bounds reads better than pydantic's separate ge/le ones."""

    def check(value: int) -> int:
        if low <= value <= high:
            return value
        raise PydanticCustomError(
            "out_of_range", "must be between {low} and {high}", {"low": low, "high": high}
        )

    return AfterValidator(check)


def _check_absolute_path(value: str) -> str:
    """A relative path would depend on the daemon's working directory, which systemd sets to /."""
    if "\0" in value:
        raise PydanticCustomError("nul_in_path", "must not contain a NUL character")
    if not os.path.isabs(value):
        raise PydanticCustomError("relative_path", "must be an absolute path")
    return value


def _check_name(value: str) -> str:
    """The name becomes a journal field value and a label, so keep it to a safe alphabet."""
    if _NAME_RE.fullmatch(value) is None:
        raise PydanticCustomError("bad_name", "must be 1 to 64 characters from A-Z a-z 0-9 _ . @ -")
    return value


def _check_bool_or_auto(value: object) -> Union[bool, Literal["auto"]]:
    """A bool-or-literal union would report two errors for one bad value."""
    if value is True or value is False:
        return value
    if value == "auto":
        return "auto"
    raise PydanticCustomError("bool_or_auto", 'must be true, false or "auto"')


def _check_unique_sections(value: tuple[Section, ...]) -> tuple[Section, ...]:
    for index, section in enumerate(value):
        if section in value[:index]:
            raise PydanticCustomError(
                "duplicate_section", 'lists "{section}" twice', {"section": section}
            )
    return value


Percent = Annotated[int, _between(1, 99)]
GrowthPercent = Annotated[int, _between(0, 10000)]
Pid = Annotated[int, _between(1, PID_MAX_LIMIT)]
Interval = Annotated[float, Field(ge=MIN_INTERVAL, allow_inf_nan=False)]
AbsolutePath = Annotated[str, AfterValidator(_check_absolute_path)]
TargetName = Annotated[str, AfterValidator(_check_name)]
JournaldEnabled = Annotated[Union[bool, Literal["auto"]], PlainValidator(_check_bool_or_auto)]
Sections = Annotated[
    tuple[Section, ...],
    BeforeValidator(_tuple_from_array),
    Field(min_length=1),
    AfterValidator(_check_unique_sections),
]


def _selector_problem(given: Sequence[str]) -> Optional[str]:
    if len(given) == 1:
        return None
    got = ", ".join(given) if given else "none"
    return f"exactly one of pid, pidfile, exe is required (got {got})"


def _duplicate_names(names: Sequence[object]) -> list[tuple[int, str]]:
    """(index, reason) for every target reusing an earlier target's name."""
    first_use: dict[str, int] = {}
    duplicates = []
    for index, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name in first_use:
            duplicates.append(
                (index, f"duplicate name {_show(name)} (already used by target[{first_use[name]}])")
            )
        else:
            first_use[name] = index
    return duplicates


class _Model(BaseModel):
    # strict: in lax mode `pid = true` becomes 1 and `threshold = "50"` becomes 50.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DaemonConfig(_Model):
    interval: Interval = 5.0
    threshold: Percent = 50
    threshold_base: ThresholdBase = "system"
    min_interval: Interval = 0.1
    detail: Detail = "summary"
    full_snapshot_min_interval: Interval = 300.0
    full_snapshot_growth: GrowthPercent = 20
    full_snapshot_on_change: bool = True
    watchdog: bool = True
    redact_cmdline: bool = False


class StdoutSink(_Model):
    enabled: bool = True
    format: RecordFormat = "memdoor"


class JournaldSink(_Model):
    enabled: JournaldEnabled = "auto"
    socket: AbsolutePath = "/run/systemd/journal/socket"
    format: RecordFormat = "memdoor"


class SinksConfig(_Model):
    stdout: StdoutSink = Field(default_factory=StdoutSink)
    journald: JournaldSink = Field(default_factory=JournaldSink)


class TargetConfig(_Model):
    """One [[target]] as written: unset optional keys stay None so the file's intent is
    kept; ResolvedTarget is the same target with the [daemon] defaults applied."""

    name: TargetName
    pid: Optional[Pid] = None
    pidfile: Optional[AbsolutePath] = None
    exe: Optional[AbsolutePath] = None
    threshold: Optional[Percent] = None
    threshold_base: Optional[ThresholdBase] = None
    interval: Optional[Interval] = None
    min_interval: Optional[Interval] = None
    detail: Optional[Detail] = None
    full_snapshot_min_interval: Optional[Interval] = None
    full_snapshot_growth: Optional[GrowthPercent] = None
    full_snapshot_on_change: Optional[bool] = None
    count: Optional[Annotated[int, Field(ge=1)]] = None
    sections: Optional[Sections] = None

    @model_validator(mode="after")
    def _one_selector(self) -> TargetConfig:
        problem = _selector_problem(
            [key for key in SELECTOR_KEYS if getattr(self, key) is not None]
        )
        if problem is not None:
            raise PydanticCustomError("selector_count", problem)
        return self


class Config(_Model):
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    targets: Annotated[tuple[TargetConfig, ...], BeforeValidator(_tuple_from_array)] = Field(
        default=(), alias="target"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        duplicates = _duplicate_names([target.name for target in self.targets])
        if duplicates:
            raise PydanticCustomError(
                "duplicate_name", "; ".join(f"target[{i}]: {r}" for i, r in duplicates)
            )
        return self


@dataclass(frozen=True)
class ResolvedTarget:
    """A target with the [daemon] defaults filled in: what the daemon acts on.

    Diff these, not TargetConfig, on reload: changing daemon.threshold changes every
    target that inherits it, and only the resolved form shows that.
    """

    name: str
    pid: Optional[int]
    pidfile: Optional[str]
    exe: Optional[str]
    threshold: int
    threshold_base: ThresholdBase
    interval: float
    # The floor of adaptive polling; never above interval.
    min_interval: float
    detail: Detail
    full_snapshot_min_interval: float
    full_snapshot_growth: int
    full_snapshot_on_change: bool
    count: Optional[int]
    sections: tuple[Section, ...]


def effective_targets(config: Config) -> list[ResolvedTarget]:
    daemon = config.daemon
    return [_resolve(target, daemon) for target in config.targets]


def _inherit(target: TargetConfig, daemon: DaemonConfig, key: str) -> Any:
    own = getattr(target, key)
    return getattr(daemon, key) if own is None else own


def _resolve(target: TargetConfig, daemon: DaemonConfig) -> ResolvedTarget:
    interval = _inherit(target, daemon, "interval")
    return ResolvedTarget(
        name=target.name,
        pid=target.pid,
        pidfile=target.pidfile,
        exe=target.exe,
        threshold=_inherit(target, daemon, "threshold"),
        threshold_base=_inherit(target, daemon, "threshold_base"),
        interval=interval,
        min_interval=min(interval, _inherit(target, daemon, "min_interval")),
        detail=_inherit(target, daemon, "detail"),
        full_snapshot_min_interval=_inherit(target, daemon, "full_snapshot_min_interval"),
        full_snapshot_growth=_inherit(target, daemon, "full_snapshot_growth"),
        full_snapshot_on_change=_inherit(target, daemon, "full_snapshot_on_change"),
        count=target.count,
        sections=ALL_SECTIONS if target.sections is None else target.sections,
    )


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
    """Every problem found in one config file; str() gives one line per problem."""

    def __init__(self, path: str, problems: Sequence[ConfigProblem]) -> None:
        super().__init__(path, list(problems))
        self.path = path
        self.problems = list(problems)

    def __str__(self) -> str:
        return "\n".join(problem.describe(self.path) for problem in self.problems)

    def record_fields(self) -> dict[str, Any]:
        """The config_invalid record's own fields: the file and each key with its reason."""
        return {
            "file": self.path,
            "errors": [
                {"key": problem.key_path, "reason": problem.reason} for problem in self.problems
            ],
        }


def load_config(path: Union[str, os.PathLike[str]]) -> Config:
    name = os.fspath(path)
    data = read_bytes(name)
    if isinstance(data, Unreadable):
        raise ConfigError(name, [ConfigProblem("", f"cannot read the file: {data.detail}")])
    return parse_config(data, name)


def parse_config(data: bytes, path: str) -> Config:
    """Decode, parse and validate; `path` only labels the problems."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        reason = f"not valid UTF-8: byte 0x{data[exc.start]:02x} at line {line}, column {column}"
        raise ConfigError(path, [ConfigProblem("", reason)]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [ConfigProblem("", f"not valid TOML: {exc}")]) from None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        errors = [e for e in exc.errors(include_url=False) if e["type"] not in _CROSS_FIELD_ERRORS]
        located = [_translate(error) for error in errors] + _cross_field_problems(raw)
    else:
        return config
    located.sort(key=lambda item: _section_order(item[0]))
    raise ConfigError(path, [ConfigProblem(_key_path(loc, raw), reason) for loc, reason in located])


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
        problem = _selector_problem([key for key in SELECTOR_KEYS if key in target])
        if problem is not None:
            problems.append((("target", index), problem))
    problems.extend(
        (("target", index, "name"), reason) for index, reason in _duplicate_names(names)
    )
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
    return loc, f"{reason} (got {_show(error['input'])})"


def _unknown_key(loc: Loc) -> str:
    key = str(loc[-1])
    table = _TABLES.get(tuple(part for part in loc[:-1] if isinstance(part, str)))
    if table is None:
        return f"unknown key {key!r}"
    known = [field.alias or name for name, field in table.model_fields.items()]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


_TABLES: dict[tuple[str, ...], type[BaseModel]] = {
    (): Config,
    ("daemon",): DaemonConfig,
    ("sinks",): SinksConfig,
    ("sinks", "stdout"): StdoutSink,
    ("sinks", "journald"): JournaldSink,
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
                    path += f" (name={_toml_string(name)})"
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


_SHOW_LIMIT = 60


def _show(value: object) -> str:
    """A bad value as the operator typed it in TOML, cut short so one problem stays one line."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_show(item) for item in value) + "]"
    elif isinstance(value, (bool, int, float, str)):
        text = _toml_scalar(value)
    else:
        text = str(value)  # TOML dates and times
    return text if len(text) <= _SHOW_LIMIT else text[: _SHOW_LIMIT - 3] + "..."


_STRING_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def _toml_string(text: str) -> str:
    """A TOML basic string: control characters must be escaped, or the file will not parse."""
    escaped = []
    for char in text:
        if char in _STRING_ESCAPES:
            escaped.append(_STRING_ESCAPES[char])
        elif char < " " or char == "\x7f":
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def _toml_scalar(value: Union[bool, int, float, str]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return repr(value)


def _toml_value(value: Union[bool, int, float, str, tuple[str, ...]]) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_string(item) for item in value) + "]"
    return _toml_scalar(value)


def _table_lines(header: str, table: BaseModel) -> list[str]:
    """Every key of a table, defaults included, so new keys appear without touching this."""
    lines = ["", f"[{header}]"]
    for key in type(table).model_fields:
        lines.append(f"{key} = {_toml_value(getattr(table, key))}")
    return lines


def render_effective(config: Config) -> str:
    """The configuration the daemon will run with, for `memdoor check-config`.

    Daemon and sink keys are written out with their defaults. A target's inherited
    settings are shown as comments instead of keys: writing them as keys would turn
    "follows daemon.threshold" into a fixed value, and loading this text back must
    give the same Config.
    """
    lines = [
        "# memdoor effective configuration: every default written out.",
        "# Target settings taken from [daemon] or from the defaults are comments.",
    ]
    lines += _table_lines("daemon", config.daemon)
    lines += _table_lines("sinks.stdout", config.sinks.stdout)
    lines += _table_lines("sinks.journald", config.sinks.journald)
    if not config.targets:
        lines += ["", "# No [[target]]: the daemon watches nothing."]
    for target, resolved in zip(config.targets, effective_targets(config)):
        lines += ["", "[[target]]", f"name = {_toml_string(target.name)}"]
        for key in SELECTOR_KEYS:
            value = getattr(target, key)
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        for key in INHERITED_KEYS:
            lines.append(_own_or_inherited(key, getattr(target, key), getattr(resolved, key)))
        if target.count is None:
            lines.append("# count not set: no limit on the number of snapshots")
        else:
            lines.append(f"count = {target.count}")
        if target.sections is None:
            lines.append(f"# sections = {_toml_value(resolved.sections)}  (default: all)")
        else:
            lines.append(f"sections = {_toml_value(target.sections)}")
    return "\n".join(lines) + "\n"


def _own_or_inherited(
    key: str, own: Optional[Union[int, float, str]], effective: Union[int, float, str]
) -> str:
    if own is None:
        return f"# {key} = {_toml_value(effective)}  (from daemon.{key})"
    return f"{key} = {_toml_value(own)}"
