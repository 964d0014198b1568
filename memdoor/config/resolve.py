"""Targets with the [daemon] defaults filled in: what the daemon acts on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Optional

from memdoor.config.schema import (
    INHERITED_KEYS,
    Config,
    DaemonConfig,
    InheritedSettings,
    TargetConfig,
)
from memdoor.vocabulary import ALL_SECTIONS, Section


class ResolvedTarget(InheritedSettings):
    """A target whose every setting is known, the inherited ones included.

    Diff these, not TargetConfig, on reload: changing daemon.threshold changes every
    target that inherits it, and only the resolved form shows that. A frozen model
    like the others, so it hashes and compares by value.
    """

    name: str
    pid: Optional[int]
    pidfile: Optional[str]
    exe: Optional[str]
    # Only a pidfile target names one, so code building the other kinds may leave it out.
    pidfile_owner: Optional[str] = None
    # Only an exe target narrows which processes it adopts.
    cmdline: Optional[str] = None
    unit: Optional[str] = None
    cgroup: Optional[str] = None
    count: Optional[int]
    sections: tuple[Section, ...]


# Every field of a resolved target is set, by the target or by [daemon]. One set shared
# by every target effective_targets makes: pydantic records the fields set per instance
# (728 bytes each, for a thousand targets that a daemon keeps for its whole run), copies
# it before changing it (model_copy), and a frozen model never adds to it.
_EVERY_FIELD_SET = set(ResolvedTarget.model_fields)


class RunningConfig(NamedTuple):
    """What a running daemon keeps of its configuration file.

    The targets only resolved: the daemon acts on and diffs nothing else, and the
    TargetConfig as written would cost as much again per target for the whole run.
    settings is the file's Config without its targets: [daemon] and [sinks.*], which a
    reload compares key by key (memdoor.daemon.changed_settings).
    """

    settings: Config
    targets: list[ResolvedTarget]


def running_config(config: Config, running: Sequence[ResolvedTarget] = ()) -> RunningConfig:
    """running: the targets a reload replaces. A target equal to one of them is that one,
    which its supervisor keeps running (memdoor.targets), so that an unchanged target is
    not kept twice after a reload."""
    kept = {target: target for target in running}
    return RunningConfig(
        Config(daemon=config.daemon, sinks=config.sinks),
        [kept.get(target, target) for target in effective_targets(config)],
    )


def effective_targets(config: Config) -> list[ResolvedTarget]:
    daemon = config.daemon
    return [_resolve(target, daemon) for target in config.targets]


def _resolve(target: TargetConfig, daemon: DaemonConfig) -> ResolvedTarget:
    """The target's own settings over the daemon's, validated against the typed model, so
    no untyped value reaches the daemon; min_interval is capped at the interval."""
    inherited = set(INHERITED_KEYS)
    settings = {
        **daemon.model_dump(include=inherited),
        **target.model_dump(include=inherited, exclude_none=True),
    }
    settings["min_interval"] = min(settings["min_interval"], settings["interval"])
    values = {
        **settings,
        "name": target.name,
        "pid": target.pid,
        "pidfile": target.pidfile,
        "pidfile_owner": target.pidfile_owner,
        "exe": target.exe,
        "cmdline": target.cmdline,
        "unit": target.unit,
        "cgroup": target.cgroup,
        "count": target.count,
        "sections": ALL_SECTIONS if target.sections is None else target.sections,
    }
    ResolvedTarget.model_validate(values)
    # Built from the values that passed, each already of its type (TargetConfig's and
    # DaemonConfig's own), rather than from validation's copies of them: the targets
    # share the [daemon] values and ALL_SECTIONS instead of a tuple each.
    return ResolvedTarget.model_construct(_EVERY_FIELD_SET, **values)
