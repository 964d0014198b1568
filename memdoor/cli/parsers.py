"""Every argparse parser of `memdoor`, built apart from what the commands do.

Parsing never prints and never exits the process: a bad command line raises
UsageError, and -h/--help or --version raises ShowText. main(argv) alone decides
what is written where and returns the exit code, so tests call it in-process.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any, Callable, NoReturn, Optional

from memdoor.cli.usage import USAGE, version_and_usage, version_line
from memdoor.events import Event
from memdoor.vocabulary import THRESHOLD_MAX, THRESHOLD_MIN, decimal, path_problem

# One day. A longer pause between two seed reports is a typo (1e10 was taken, and
# overflowed the signal wait); a daily report is better done by a timer.
MAX_INTERVAL_S = 86_400.0
# Far more reports than anyone reads, small enough to be a number someone meant.
MAX_COUNT = 1_000_000_000
DEFAULT_DEMO_S = 6.0
# The demo shows records within seconds; an hour is already far more than it needs.
MAX_DEMO_S = 3_600.0
# check-config --strict with warnings: the file is valid (not 78), yet fails the check.
EX_WARNINGS = 1


class UsageError(Exception):
    """A bad command line: main prints `PROG: MESSAGE` and then the usage on stderr, exit 2."""

    def __init__(self, prog: str, message: str, usage: str) -> None:
        super().__init__(message)
        self.prog = prog
        self.usage = usage


class ShowText(Exception):
    """-h/--help or --version: main prints the text on stdout, exit 0."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _ShowAction(argparse.Action):
    """Raises ShowText as soon as the option is seen, before required options are missed.

    text is fixed (the seed's --help and --version), or None for the parser's own help.
    """

    def __init__(
        self, option_strings: Sequence[str], dest: str, text: Optional[str], help: str
    ) -> None:
        super().__init__(
            option_strings,
            dest=argparse.SUPPRESS,
            default=argparse.SUPPRESS,
            nargs=0,
            help=help,
        )
        self.text = text

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: Optional[str] = None,
    ) -> NoReturn:
        raise ShowText(parser.format_help() if self.text is None else self.text)


class CommandParser(argparse.ArgumentParser):
    """The one parser class: an error raises UsageError, -h/--help raises ShowText."""

    def __init__(
        self,
        prog: str,
        *,
        description: Optional[str] = None,
        usage: Optional[str] = None,
        help_text: Optional[str] = None,
    ) -> None:
        super().__init__(prog=prog, description=description, usage=usage, add_help=False)
        self.add_argument(
            "-h", "--help", action=_ShowAction, text=help_text, help="show this help and exit"
        )

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, message, self.format_usage())


def _seconds_up_to(most: float) -> Callable[[str], float]:
    """A number of seconds above 0 and at most `most`; nan and inf are refused too."""

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isnan(value):
            raise argparse.ArgumentTypeError(f"must be a number of seconds (got {text!r})")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0 (got {text!r})")
        if value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most:g} seconds (got {text!r})")
        return value

    return seconds


def _whole_number_up_to(most: Optional[int]) -> Callable[[str], int]:
    """A positive integer in plain ASCII digits, at most `most` when there is a bound."""

    def whole_number(text: str) -> int:
        value = decimal(text)
        if value is not None and value > 0 and (most is None or value <= most):
            return value
        if most is not None and text.isascii() and text.isdigit() and text.strip("0"):
            raise argparse.ArgumentTypeError(f"must be at most {most} (got {text!r})")
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text!r})")

    return whole_number


def _threshold(text: str) -> int:
    value = decimal(text)
    if value is None or not THRESHOLD_MIN <= value <= THRESHOLD_MAX:
        raise argparse.ArgumentTypeError(
            f"must be an integer from {THRESHOLD_MIN} to {THRESHOLD_MAX} (got {text!r})"
        )
    return value


def _absolute_path(text: str) -> str:
    problem = path_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem} (got {text!r})")
    return text


def build_seed_parser() -> CommandParser:
    """`memdoor -p PID -e EXE -m PCT -i SEC`: its usage, help and errors show USAGE as is."""
    parser = CommandParser("memdoor", usage=USAGE[len("usage: ") :], help_text=version_and_usage())
    parser.add_argument(
        "-V", "--version", action=_ShowAction, text=f"{version_line()}\n", help="print the version"
    )
    parser.add_argument("-p", "--pid", type=_whole_number_up_to(None), required=True)
    parser.add_argument("-e", "--exename", type=_absolute_path, required=True)
    parser.add_argument("-m", "--memory-pressure-threshold", type=_threshold, required=True)
    parser.add_argument("-i", "--interval", type=_seconds_up_to(MAX_INTERVAL_S), required=True)
    parser.add_argument("-c", "--count", type=_whole_number_up_to(MAX_COUNT))
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--sort", choices=("address", "rss"), default="address")
    return parser


def _add_format(parser: CommandParser) -> None:
    """run's and demo's --format: what a person at a terminal reads, or the records."""
    parser.add_argument(
        "--format",
        choices=("auto", "json", "console"),
        default="auto",
        help="what stdout shows: console is one short aligned line per record (time, level, "
        "target, pid, event, the key figures), coloured on a terminal unless NO_COLOR is "
        "set; json is the records themselves, one JSON object per line (ECS documents when "
        "sinks.stdout.format says so); auto (the default) is console on a terminal and json "
        "anywhere else. The journal gets the records whatever the choice.",
    )


def build_run_parser() -> CommandParser:
    parser = CommandParser(
        "memdoor run",
        description="Run the daemon in the foreground, as systemd starts it: JSON records "
        "on stdout and in the journal until SIGTERM or SIGINT; SIGHUP reloads FILE.",
    )
    parser.add_argument(
        "--config",
        "-c",
        required=True,
        metavar="FILE",
        help="the TOML configuration to run (required; /etc/memdoor/example.toml documents "
        "every key). An invalid file is reported on stderr and as a config_invalid record, "
        "exit 78.",
    )
    _add_format(parser)
    return parser


def build_check_config_parser() -> CommandParser:
    parser = CommandParser(
        "memdoor check-config",
        description="Validate a configuration and print it in full, every default filled "
        "in, without starting anything.",
    )
    parser.add_argument(
        "path",
        metavar="FILE",
        help="the TOML configuration to check. Valid: the effective configuration on "
        "stdout, then a warning on stderr for each thing that is valid but likely not "
        "meant (no target, a pid that runs nothing, an exe that does not exist, a pidfile "
        "in a directory that does not exist), exit 0. Invalid: each problem on stderr and "
        "a config_invalid record on stdout, exit 78. Stdout not writable: exit 74.",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help=f"exit {EX_WARNINGS} when there is any warning (the effective configuration "
        "is still printed)",
    )
    return parser


def build_demo_parser() -> CommandParser:
    parser = CommandParser(
        "memdoor demo",
        description="Run the real daemon for a few seconds against a process it starts, "
        "mappings and all, so that records appear without writing a configuration. As root, "
        "the process grows in a temporary memory cgroup (128 MiB, removed afterwards) until "
        "the OOM killer ends it, and the demo ends with the post-mortem `memdoor show` gives "
        "of its own run (on stderr when stdout is JSON). Otherwise the process holds a "
        "little more than 1% of RAM (at most 1 GiB) and is not killed.",
    )
    parser.add_argument(
        "--seconds",
        type=_seconds_up_to(MAX_DEMO_S),
        default=DEFAULT_DEMO_S,
        metavar="N",
        help=f"how long the daemon runs before it stops, in seconds (default {DEFAULT_DEMO_S:g}; "
        f"more than 0, at most {MAX_DEMO_S:g})",
    )
    _add_format(parser)
    return parser


def _kill_choice(text: str) -> int:
    """A kill's number in the --kills list, or 'latest' (0)."""
    if text == "latest":
        return 0
    value = decimal(text)
    if value is None or value == 0:
        raise argparse.ArgumentTypeError(
            f"must be a kill's number from --kills or 'latest' (got {text!r})"
        )
    return value


def build_show_parser() -> CommandParser:
    parser = CommandParser(
        "memdoor show",
        description="Show memdoor's records to a person: one short line per record (the "
        "default), the list of OOM kills (--kills), or one kill's post-mortem (--kill): the "
        "last snapshot as a report and the memory trajectory up to the kill as a chart. "
        "Records come from the journal unless FILE is given. Exit 0; 1 when the kill asked "
        "for is not among the records or journalctl fails; 66 when FILE cannot be read; 69 "
        "when journalctl is missing; 74 when stdout or the --html file cannot be written.",
    )
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="JSON-lines files of records, as `memdoor run` writes them to stdout; - reads "
        "standard input. Without FILE, the journal: journalctl -o json --all "
        "SYSLOG_IDENTIFIER=memdoor, with the filters below as MEMDOOR_* field matches.",
    )
    parser.add_argument(
        "-D",
        "--directory",
        metavar="DIR",
        help="read the journal files in DIR (journalctl --directory), e.g. a copy from "
        "another machine",
    )
    parser.add_argument(
        "-t",
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="only records of this target (repeat for several)",
    )
    parser.add_argument(
        "-e",
        "--event",
        action="append",
        default=[],
        choices=[event.value for event in Event],
        metavar="EVENT",
        help="only records of this event (repeat for several; e.g. oom_killed, sample); "
        "applies to the record lines, --kills and --kill read every event they need",
    )
    parser.add_argument(
        "-S",
        "--since",
        metavar="TIME",
        help="only records from TIME on. From the journal: any time journalctl --since "
        "takes. From files: an ISO 8601 date or time ('2026-11-24 19:30', "
        "'2026-11-24T19:30:18Z'; local time without a zone), a time of day today ('19:30'), "
        "now, today, yesterday, or relative to now: -90s, -30min, -1h, -2d, -1w (a value "
        "starting with - needs the =: --since=-1h)",
    )
    parser.add_argument(
        "-U", "--until", metavar="TIME", help="only records up to TIME, written as for --since"
    )
    parser.add_argument(
        "--kills",
        action="store_true",
        help="list the OOM kills: when, target, pid, process name, what told of it, the "
        "constraint, the cgroup limit and how old the last snapshot was",
    )
    parser.add_argument(
        "--kill",
        type=_kill_choice,
        metavar="N",
        help="the post-mortem of kill N as numbered by --kills, or of the latest with "
        "--kill latest",
    )
    parser.add_argument(
        "--html",
        metavar="OUT",
        help="write the post-mortem of the kill chosen by --kill (the latest by default) to "
        "OUT as one self-contained HTML page: the trajectory chart, the mapping groups "
        "and the tables, nothing fetched from anywhere",
    )
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the record lines: auto (the default) colours on a terminal unless the "
        "NO_COLOR environment variable is set",
    )
    parser.add_argument(
        "--ascii",
        action="store_true",
        help="draw charts with ASCII only (the default when stdout's encoding is not UTF-8)",
    )
    return parser
