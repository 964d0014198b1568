"""Targets with the [daemon] defaults filled in: what the daemon acts on."""

from __future__ import annotations

from typing import Optional

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


def effective_targets(config: Config) -> list[ResolvedTarget]:
    daemon = config.daemon
    return [_resolve(target, daemon) for target in config.targets]


def _resolve(target: TargetConfig, daemon: DaemonConfig) -> ResolvedTarget:
    """The target's own settings over the daemon's, validated into the typed model, so
    no untyped value reaches the daemon; min_interval is capped at the interval."""
    inherited = set(INHERITED_KEYS)
    resolved = ResolvedTarget.model_validate(
        {
            **daemon.model_dump(include=inherited),
            **target.model_dump(include=inherited, exclude_none=True),
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
    )
    if resolved.min_interval <= resolved.interval:
        # No copy: a copy's set of fields is twice the size (a thousand targets keep one each).
        return resolved
    return resolved.model_copy(update={"min_interval": resolved.interval})
