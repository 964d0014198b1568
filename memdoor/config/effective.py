"""The configuration the daemon will run with, as TOML: what `memdoor check-config` prints."""

from __future__ import annotations

from typing import Optional, Union

from pydantic import BaseModel

from memdoor.config.resolve import effective_targets
from memdoor.config.schema import (
    EXE_NARROWING_KEYS,
    INHERITED_KEYS,
    SELECTOR_KEYS,
    Config,
    TargetConfig,
)
from memdoor.config.toml_text import toml_string, toml_value

# In the order a [[target]] table lists them.
_TARGET_INHERITED_KEYS = [key for key in TargetConfig.model_fields if key in INHERITED_KEYS]


def render_effective(config: Config) -> str:
    """Daemon and sink keys are written out with their defaults. A target's inherited
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
        lines += ["", "[[target]]", f"name = {toml_string(target.name)}"]
        for key in SELECTOR_KEYS:
            value = getattr(target, key)
            if value is not None:
                lines.append(f"{key} = {toml_value(value)}")
        for key in ("pidfile_owner", *EXE_NARROWING_KEYS):
            value = getattr(target, key)
            if value is not None:
                lines.append(f"{key} = {toml_string(value)}")
        for key in _TARGET_INHERITED_KEYS:
            lines.append(_own_or_inherited(key, getattr(target, key), getattr(resolved, key)))
        if target.count is None:
            lines.append("# count not set: no limit on the number of snapshots")
        else:
            lines.append(f"count = {target.count}")
        if target.sections is None:
            lines.append(f"# sections = {toml_value(resolved.sections)}  (default: all)")
        else:
            lines.append(f"sections = {toml_value(target.sections)}")
    return "\n".join(lines) + "\n"


def _table_lines(header: str, table: BaseModel) -> list[str]:
    """Every key of a table, defaults included, so new keys appear without touching this."""
    lines = ["", f"[{header}]"]
    for key in type(table).model_fields:
        lines.append(f"{key} = {toml_value(getattr(table, key))}")
    return lines


def _own_or_inherited(
    key: str, own: Optional[Union[int, float, str]], effective: Union[int, float, str]
) -> str:
    if own is None:
        return f"# {key} = {toml_value(effective)}  (from daemon.{key})"
    return f"{key} = {toml_value(own)}"
