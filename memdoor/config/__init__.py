"""The daemon's configuration: one TOML file validated into frozen, value-compared models.

schema holds the models, resolve applies the [daemon] defaults to targets, problems
words what is wrong, load turns a file into a Config or a ConfigError,
effective writes the configuration back out for `memdoor check-config`, and advice
says what in a valid file is likely not what was meant.
"""

from memdoor.config.advice import config_warnings
from memdoor.config.effective import render_effective
from memdoor.config.load import EX_CONFIG, load_config, parse_config
from memdoor.config.problems import ConfigError, ConfigProblem
from memdoor.config.resolve import (
    ResolvedTarget,
    RunningConfig,
    effective_targets,
    running_config,
)
from memdoor.config.schema import (
    INHERITED_KEYS,
    SELECTOR_KEYS,
    Config,
    DaemonConfig,
    InheritedSettings,
    JournaldSettings,
    SinksConfig,
    StdoutSettings,
    TargetConfig,
)
from memdoor.vocabulary import PID_MAX_LIMIT

__all__ = [
    "EX_CONFIG",
    "INHERITED_KEYS",
    "PID_MAX_LIMIT",
    "SELECTOR_KEYS",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "DaemonConfig",
    "InheritedSettings",
    "JournaldSettings",
    "ResolvedTarget",
    "RunningConfig",
    "SinksConfig",
    "StdoutSettings",
    "TargetConfig",
    "config_warnings",
    "effective_targets",
    "load_config",
    "parse_config",
    "render_effective",
    "running_config",
]
