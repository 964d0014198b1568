"""Entry point: `memdoor` dispatches to the seed command or a daemon subcommand.

main(argv) -> int so that tests call it in-process, as pypa/build does.
"""

from __future__ import annotations

import sys
from typing import Optional

from memdoor.cli.seed import print_version_and_usage, run_seed
from memdoor.cli.usage import USAGE, version_line


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print_version_and_usage(sys.stdout)
        return 2
    if args[0] in ("-h", "--help"):
        print_version_and_usage(sys.stdout)
        return 0
    if args[0] in ("-V", "--version"):
        print(version_line())
        return 0
    if args[0] in ("run", "check-config", "demo"):
        from memdoor.cli.daemon_commands import run_daemon_command

        return run_daemon_command(args)
    return run_seed(args, sys.stdout)


def entry_point() -> None:
    sys.exit(main())


__all__ = ["USAGE", "entry_point", "main"]
