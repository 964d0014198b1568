"""The sub-command table, each parser's help and bounds, all through main(argv)."""

from __future__ import annotations

import argparse
import importlib

import pytest

from memdoor.cli import commands
from memdoor.cli.commands import SUBCOMMANDS, Command
from memdoor.cli.main import main
from memdoor.cli.parsers import (
    MAX_COUNT,
    MAX_DEMO_S,
    MAX_INTERVAL_S,
    build_demo_parser,
    build_seed_parser,
)
from memdoor.cli.usage import USAGE

SEED_GOOD = ["-p", "1", "-e", "/sbin/init", "-m", "50", "-i", "1"]
NO_INTERVAL = SEED_GOOD[:-2]

# --- the table -----------------------------------------------------------------


def test_the_table_names_the_commands_of_the_usage() -> None:
    assert list(SUBCOMMANDS) == ["run", "check-config", "demo", "show"]
    for name in SUBCOMMANDS:
        assert f"memdoor {name} " in USAGE


def test_a_sub_command_runs_through_its_table_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []

    def execute(args: argparse.Namespace) -> int:
        seen.append(args)
        return 42

    monkeypatch.setitem(SUBCOMMANDS, "demo", Command(build_demo_parser, execute))
    assert main(["demo", "--seconds", "2.5"]) == 42
    assert [args.seconds for args in seen] == [2.5]


def test_options_first_run_the_seed_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[argparse.Namespace] = []

    def execute(args: argparse.Namespace) -> int:
        seen.append(args)
        return 7

    monkeypatch.setattr(commands, "SEED", Command(build_seed_parser, execute))
    assert main([*SEED_GOOD, "-c", "3"]) == 7
    assert [(args.pid, args.interval, args.count, args.format) for args in seen] == [
        (1, 1.0, 3, "text")
    ]


def test_a_usage_error_runs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def execute(args: argparse.Namespace) -> int:
        raise AssertionError("executed")

    monkeypatch.setitem(SUBCOMMANDS, "demo", Command(build_demo_parser, execute))
    assert main(["demo", "--seconds", "0"]) == 2
    assert main(["demo", "--help"]) == 0


@pytest.mark.parametrize("word", ["help", "frobnicate", "Run", "Show", ""])
def test_an_unknown_command_names_the_known_ones(
    capsys: pytest.CaptureFixture[str], word: str
) -> None:
    assert main([word, "--config", "x.toml"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    first, rest = err.split("\n", 1)
    assert first == (
        f"memdoor: unknown command {word!r}; the commands are run, check-config, demo, show "
        "(see memdoor --help)"
    )
    assert rest == f"{USAGE}\n"


def test_python_m_memdoor_runs_main_only_as_a_script() -> None:
    importlib.import_module("memdoor.__main__")


# --- help ----------------------------------------------------------------------

# What each sub-command's help must say, beyond its options: defaults, units, exit codes.
HELP_MENTIONS = {
    "run": ["required", "exit 78"],
    "check-config": ["exit 0", "exit 78", "exit 74"],
    "demo": ["seconds", "default 6", "at most 3600"],
    "show": ["journalctl", "NO_COLOR", "--since=-1h", "Exit 0", "66", "69", "74"],
}


def test_every_sub_command_has_its_help_checked() -> None:
    assert set(HELP_MENTIONS) == set(SUBCOMMANDS)


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("name", list(HELP_MENTIONS))
def test_sub_command_help_explains_every_option(
    capsys: pytest.CaptureFixture[str], name: str, flag: str
) -> None:
    assert main([name, flag]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"usage: memdoor {name} ")
    parser = SUBCOMMANDS[name].build_parser()
    for action in parser._actions:
        assert action.help, action
        assert action.help in " ".join(out.split())
        for option in action.option_strings:
            assert option in out
        if action.metavar is not None:
            assert str(action.metavar) in out
    for words in HELP_MENTIONS[name]:
        assert words in " ".join(out.split())


@pytest.mark.parametrize(
    "argv", [["run", "--help", "--config"], ["run", "--config", "/nonexistent", "-h"]]
)
def test_help_wins_over_other_arguments(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: memdoor run ") and err == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "the following arguments are required: --config/-c"),
        (["check-config"], "the following arguments are required: FILE"),
        (["check-config", "a.toml", "b.toml"], "unrecognized arguments: b.toml"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_sub_command_usage_errors_show_its_own_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    usage = SUBCOMMANDS[argv[0]].build_parser().format_usage()
    assert (out, err) == ("", f"memdoor {argv[0]}: {message}\n{usage}")


# --- numeric bounds --------------------------------------------------------------

INTERVAL = "argument -i/--interval: must"
COUNT = "argument -c/--count: must"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-i", "1e10"], f"{INTERVAL} be at most 86400 seconds (got '1e10')"),
        (["-i", "86400.5"], f"{INTERVAL} be at most 86400 seconds (got '86400.5')"),
        (["-i", "inf"], f"{INTERVAL} be at most 86400 seconds (got 'inf')"),
        (["-i", "nan"], f"{INTERVAL} be a number of seconds (got 'nan')"),
        (["--interval=-inf"], f"{INTERVAL} be greater than 0 (got '-inf')"),
        (["-i", "1", "-c", "1000000001"], f"{COUNT} be at most 1000000000 (got '1000000001')"),
        (["-i", "1", "-c", "9" * 30], f"{COUNT} be at most 1000000000 (got '{'9' * 30}')"),
        (["-i", "1", "-c", "00"], f"{COUNT} be a positive integer (got '00')"),
        (["-i", "1", "-c", "1e3"], f"{COUNT} be a positive integer (got '1e3')"),
    ],
)
def test_seed_numbers_out_of_bounds(
    capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main([*NO_INTERVAL, *extra]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"memdoor: {message}\n{USAGE}\n")


def test_seed_numbers_at_their_bounds_are_taken() -> None:
    argv = [*NO_INTERVAL, "-i", str(MAX_INTERVAL_S), "-c", str(MAX_COUNT)]
    args = build_seed_parser().parse_args(argv)
    assert (args.interval, args.count) == (86_400.0, 1_000_000_000)


@pytest.mark.parametrize(
    ("seconds", "reason"),
    [
        ("nan", "be a number of seconds"),
        ("soon", "be a number of seconds"),
        ("-1", "be greater than 0"),
        ("0", "be greater than 0"),
        ("1e300", "be at most 3600 seconds"),
        ("inf", "be at most 3600 seconds"),
        ("3600.5", "be at most 3600 seconds"),
    ],
)
def test_demo_seconds_out_of_bounds(
    capsys: pytest.CaptureFixture[str], seconds: str, reason: str
) -> None:
    assert main(["demo", "--seconds", seconds]) == 2
    out, err = capsys.readouterr()
    usage = build_demo_parser().format_usage()
    assert (out, err) == (
        "",
        f"memdoor demo: argument --seconds: must {reason} (got {seconds!r})\n{usage}",
    )


def test_demo_seconds_default_and_bound() -> None:
    assert build_demo_parser().parse_args([]).seconds == 6.0
    assert build_demo_parser().parse_args(["--seconds", "3600"]).seconds == MAX_DEMO_S
