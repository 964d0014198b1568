"""The daemon's configuration file as frozen, value-compared pydantic models.

Why the models are frozen and compared by value: on SIGHUP the daemon loads the file
again and must tell which targets changed, so two loads of an unchanged file have to
give equal, hashable objects.

Why strict: in lax mode `pid = true` becomes 1 and `threshold = "50"` becomes 50,
hiding the operator's mistake behind a value they did not mean.
"""

from __future__ import annotations

import pwd
import re
from collections.abc import Sequence
from typing import Annotated, Literal, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from memdoor.config.toml_text import show
from memdoor.vocabulary import (
    PID_MAX_LIMIT,
    THRESHOLD_MAX,
    THRESHOLD_MIN,
    Detail,
    RecordFormat,
    Section,
    ThresholdBase,
    path_problem,
)

SELECTOR_KEYS = ("pid", "pidfile", "exe")

# Below this a poll would mostly measure memdoor itself (a snapshot reads dozens of
# /proc files); it bounds daemon.interval too, because targets inherit it.
MIN_INTERVAL = 0.05

_NAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
# A pattern is written by the operator, but matched against command lines processes
# choose: kept short enough to read at a glance and to bound what it can cost.
MAX_CMDLINE_PATTERN = 256
# systemd's unit name alphabet (systemd.unit(5)); a process belongs to a service or a
# scope. UNIT_NAME_MAX is 256 with the terminating NUL.
_UNIT_RE = re.compile(r"[A-Za-z0-9:_.\\@-]{1,247}\.(service|scope)")
_CGROUP_MAX = 4096
# Keys that narrow an exe target, and the key each applies to.
EXE_NARROWING_KEYS = ("cmdline", "unit", "cgroup")


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


def _check_path(value: str) -> str:
    problem = path_problem(value)
    if problem is not None:
        raise PydanticCustomError("bad_path", problem)
    return value


def _check_user(value: str) -> str:
    """An unknown pidfile_owner is a typo to report now, not a target that never resolves."""
    try:
        pwd.getpwnam(value)
    except (KeyError, ValueError):
        raise PydanticCustomError("unknown_user", "no user of this name on this host") from None
    return value


def _check_name(value: str) -> str:
    """The name becomes a journal field value and a label, so keep it to a safe alphabet."""
    if _NAME_RE.fullmatch(value) is None:
        raise PydanticCustomError("bad_name", "must be 1 to 64 characters from A-Z a-z 0-9 _ . @ -")
    return value


def _check_pattern(value: str) -> str:
    """A regular expression Python's re compiles, at most MAX_CMDLINE_PATTERN characters."""
    if len(value) > MAX_CMDLINE_PATTERN:
        raise PydanticCustomError(
            "pattern_too_long",
            "must be at most {most} characters (got {length})",
            {"most": MAX_CMDLINE_PATTERN, "length": len(value)},
        )
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError) as exc:
        raise PydanticCustomError(
            "bad_pattern", "not a valid regular expression: {error}", {"error": str(exc)}
        ) from None
    return value


def _check_unit(value: str) -> str:
    if _UNIT_RE.fullmatch(value) is None:
        raise PydanticCustomError(
            "bad_unit", "must be a systemd unit name ending in .service or .scope"
        )
    return value


def _check_cgroup(value: str) -> str:
    """A cgroup path as /proc/PID/cgroup prints it, so that a prefix compares as written."""
    parts = value.split("/")
    if (
        not value.startswith("/")
        or len(value) > _CGROUP_MAX
        or (value != "/" and any(part in ("", ".", "..") for part in parts[1:]))
        or "\0" in value
    ):
        raise PydanticCustomError(
            "bad_cgroup",
            "must be a cgroup path as /proc/PID/cgroup shows it: starting with /, without "
            'empty, . or .. components or a trailing /, e.g. "/system.slice/app.service"',
        )
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


Percent = Annotated[int, _between(THRESHOLD_MIN, THRESHOLD_MAX)]
GrowthPercent = Annotated[int, _between(0, 10000)]
# A pid above PID_MAX_LIMIT can never match a process: a typo rather than a process
# that has not started yet.
Pid = Annotated[int, _between(1, PID_MAX_LIMIT)]
Interval = Annotated[float, Field(ge=MIN_INTERVAL, allow_inf_nan=False)]
AbsolutePath = Annotated[str, AfterValidator(_check_path)]
UserName = Annotated[str, AfterValidator(_check_user)]
TargetName = Annotated[str, AfterValidator(_check_name)]
CmdlinePattern = Annotated[str, AfterValidator(_check_pattern)]
UnitName = Annotated[str, AfterValidator(_check_unit)]
CgroupPath = Annotated[str, AfterValidator(_check_cgroup)]
JournaldEnabled = Annotated[Union[bool, Literal["auto"]], PlainValidator(_check_bool_or_auto)]
Sections = Annotated[
    tuple[Section, ...],
    BeforeValidator(_tuple_from_array),
    Field(min_length=1),
    AfterValidator(_check_unique_sections),
]


def selector_problem(given: Sequence[str]) -> Optional[str]:
    """Why the selector keys a target sets are not exactly one, or None."""
    if len(given) == 1:
        return None
    got = ", ".join(given) if given else "none"
    return f"exactly one of pid, pidfile, exe is required (got {got})"


def owner_problems(keys: Sequence[str]) -> list[tuple[str, str]]:
    """(key, reason) for each key that only one kind of target may set, set on another:
    pidfile_owner belongs to a pidfile target, the narrowing keys to an exe target."""
    problems = []
    if "pidfile_owner" in keys and "pidfile" not in keys:
        problems.append(
            ("pidfile_owner", "applies only to a pidfile target (this target has no pidfile)")
        )
    if "exe" not in keys:
        problems += [
            (key, "applies only to an exe target (this target has no exe)")
            for key in EXE_NARROWING_KEYS
            if key in keys
        ]
    return problems


def duplicate_names(names: Sequence[object]) -> list[tuple[int, str]]:
    """(index, reason) for every target reusing an earlier target's name."""
    first_use: dict[str, int] = {}
    duplicates = []
    for index, name in enumerate(names):
        if not isinstance(name, str):
            continue
        if name in first_use:
            duplicates.append(
                (index, f"duplicate name {show(name)} (already used by target[{first_use[name]}])")
            )
        else:
            first_use[name] = index
    return duplicates


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class InheritedSettings(_Model):
    """The settings a [[target]] may set and otherwise takes from [daemon], with the
    defaults [daemon] has when the file does not set them.

    Listed once here: DaemonConfig and ResolvedTarget extend this model, and
    TargetConfig repeats the keys only as optional overrides (a test keeps the two
    lists equal).
    """

    interval: Interval = 5.0
    threshold: Percent = 50
    threshold_base: ThresholdBase = "any"
    # The floor of adaptive polling; a resolved target's is never above its interval.
    min_interval: Interval = 0.1
    detail: Detail = "summary"
    full_snapshot_min_interval: Interval = 300.0
    full_snapshot_growth: GrowthPercent = 20
    full_snapshot_on_change: bool = True


# Target keys that fall back to the [daemon] key of the same name.
INHERITED_KEYS: tuple[str, ...] = tuple(InheritedSettings.model_fields)


class DaemonConfig(InheritedSettings):
    watchdog: bool = True
    redact_cmdline: bool = False


class StdoutSettings(_Model):
    enabled: bool = True
    format: RecordFormat = "memdoor"


class JournaldSettings(_Model):
    enabled: JournaldEnabled = "auto"
    socket: AbsolutePath = "/run/systemd/journal/socket"
    format: RecordFormat = "memdoor"


class SinksConfig(_Model):
    stdout: StdoutSettings = Field(default_factory=StdoutSettings)
    journald: JournaldSettings = Field(default_factory=JournaldSettings)


class TargetConfig(_Model):
    """One [[target]] as written: unset optional keys stay None so the file's intent is
    kept; ResolvedTarget is the same target with the [daemon] defaults applied."""

    name: TargetName
    pid: Optional[Pid] = None
    pidfile: Optional[AbsolutePath] = None
    # The user besides root whose pidfile is believed, and whose processes alone it
    # may name (docs/configuration.md, "Pidfiles").
    pidfile_owner: Optional[UserName] = None
    exe: Optional[AbsolutePath] = None
    # With exe only: which of the exe's processes are adopted (docs/configuration.md).
    cmdline: Optional[CmdlinePattern] = None
    unit: Optional[UnitName] = None
    cgroup: Optional[CgroupPath] = None
    # The overrides of InheritedSettings, each of the same type or None.
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
        given = [key for key in type(self).model_fields if getattr(self, key) is not None]
        problem = selector_problem([key for key in SELECTOR_KEYS if key in given])
        if problem is not None:
            raise PydanticCustomError("selector_count", problem)
        problems = owner_problems(given)
        if problems:
            raise PydanticCustomError(
                "key_of_another_kind", "; ".join(f"{key} {reason}" for key, reason in problems)
            )
        return self


class Config(_Model):
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    targets: Annotated[tuple[TargetConfig, ...], BeforeValidator(_tuple_from_array)] = Field(
        default=(), alias="target"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        duplicates = duplicate_names([target.name for target in self.targets])
        if duplicates:
            raise PydanticCustomError(
                "duplicate_name", "; ".join(f"target[{i}]: {r}" for i, r in duplicates)
            )
        return self
