"""What `memdoor run` and `memdoor check-config` do once parsed.

`memdoor demo` is in memdoor.cli.demo_command: its lab, temporary files and
post-mortem views would otherwise stay loaded in every running daemon.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from memdoor.cli.daemon_bridge import report_config_error, run_daemon
from memdoor.cli.output import EX_IOERR, write_stdout
from memdoor.cli.parsers import EX_WARNINGS
from memdoor.config import (
    EX_CONFIG,
    Config,
    ConfigError,
    RunningConfig,
    config_warnings,
    load_config,
    render_effective,
    running_config,
)


def load_or_report(path: str) -> Optional[Config]:
    """The configuration at path, or None once what is wrong with it is reported."""
    try:
        return load_config(path)
    except ConfigError as exc:
        report_config_error(exc)
        return None


def run_command(args: argparse.Namespace) -> int:
    config = _running_config_or_report(args.config)
    if config is None:
        return EX_CONFIG
    return run_daemon(args.config, config, args.format)


def _running_config_or_report(path: str) -> Optional[RunningConfig]:
    """What the daemon keeps of the file, or None once what is wrong with it is reported.

    The Config as loaded ends with this call: held by run_command for the daemon's whole
    run, its targets as written would cost the daemon as much again as it acts on.
    """
    config = load_or_report(path)
    return None if config is None else running_config(config)


def check_config_command(args: argparse.Namespace) -> int:
    if sys.stdout is None:
        return _check_config_without_stdout(args.path)
    config = load_or_report(args.path)
    if config is None:
        return EX_CONFIG
    problem = write_stdout(render_effective(config))
    if problem is not None:
        return _unwritten(args.path, problem)
    warnings = config_warnings(config)
    for warning in warnings:
        print(f"memdoor check-config: warning: {warning.describe(args.path)}", file=sys.stderr)
    return EX_WARNINGS if warnings and args.strict else 0


def _unwritten(path: str, reason: str) -> int:
    print(
        f"memdoor check-config: {path} is valid, but the effective configuration "
        f"cannot be written to standard output: {reason}",
        file=sys.stderr,
    )
    return EX_IOERR


def _check_config_without_stdout(path: str) -> int:
    """fd 1 was closed before Python started (`>&-`): neither the effective configuration
    nor a config_invalid record has anywhere to go, so the verdict is given on stderr."""
    try:
        load_config(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EX_CONFIG
    return _unwritten(path, "it is closed")
