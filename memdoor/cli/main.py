"""Entry point: `memdoor` dispatches to the seed command or a sub-command.

main(argv) -> int so that tests call it in-process, as pypa/build does: nothing
below it exits the process.
"""

from __future__ import annotations

import sys
from typing import Optional

from memdoor.cli.commands import select_command
from memdoor.cli.parsers import ShowText, UsageError
from memdoor.cli.usage import EX_USAGE, version_and_usage


def main(argv: Optional[list[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        sys.stdout.write(version_and_usage())
        return EX_USAGE
    try:
        command, rest = select_command(args)
        parsed = command.build_parser().parse_args(rest)
    except ShowText as shown:
        sys.stdout.write(shown.text)
        return 0
    except UsageError as error:
        sys.stderr.write(f"{error.prog}: {error}\n{error.usage}")
        return EX_USAGE
    return command.execute(parsed)


def entry_point() -> None:
    sys.exit(main())
