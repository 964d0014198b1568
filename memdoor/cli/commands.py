"""The table of `memdoor` sub-commands: each name, how its parser is built, what runs it.

main() dispatches through this table alone. A first word that is an option is
the seed command line (`memdoor -p PID ...`); any other word must be a name here.
"""

from __future__ import annotations

import argparse
from typing import Callable, NamedTuple

from memdoor.cli.parsers import (
    CommandParser,
    build_check_config_parser,
    build_demo_parser,
    build_run_parser,
    build_seed_parser,
    build_show_parser,
)


class Command(NamedTuple):
    build_parser: Callable[[], CommandParser]
    execute: Callable[[argparse.Namespace], int]


# The daemon's commands import pydantic, structlog and the daemon (a fifth of a
# second, some MB): only when one of them runs, never for the seed command line.
# The seed's text rendering, in turn, has no place in a running daemon's memory.


def _seed(args: argparse.Namespace) -> int:
    from memdoor.cli.seed import run_seed

    return run_seed(args)


def _run(args: argparse.Namespace) -> int:
    from memdoor.cli.daemon_commands import run_command

    return run_command(args)


def _check_config(args: argparse.Namespace) -> int:
    from memdoor.cli.daemon_commands import check_config_command

    return check_config_command(args)


def _demo(args: argparse.Namespace) -> int:
    from memdoor.cli.demo_command import demo_command

    return demo_command(args)


def _show(args: argparse.Namespace) -> int:
    from memdoor.cli.show_command import show_command

    return show_command(args)


SUBCOMMANDS: dict[str, Command] = {
    "run": Command(build_run_parser, _run),
    "check-config": Command(build_check_config_parser, _check_config),
    "demo": Command(build_demo_parser, _demo),
    "show": Command(build_show_parser, _show),
}
SEED = Command(build_seed_parser, _seed)


def select_command(argv: list[str]) -> tuple[Command, list[str]]:
    """The command argv names and the arguments for its parser; raises UsageError."""
    first = argv[0]
    if first in SUBCOMMANDS:
        return SUBCOMMANDS[first], argv[1:]
    if first.startswith("-"):
        return SEED, argv
    known = ", ".join(SUBCOMMANDS)
    build_seed_parser().error(
        f"unknown command {first!r}; the commands are {known} (see memdoor --help)"
    )
