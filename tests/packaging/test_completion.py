"""bash completion for memdoor: sourced in a real bash, its function called as readline
would, and its lists compared with the parsers so an option added is completed too."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from memdoor.cli.commands import SEED, SUBCOMMANDS, Command
from memdoor.events import Event

SCRIPT = Path(__file__).resolve().parents[2] / "packaging" / "completion" / "memdoor"


def complete(*words: str, cwd: Path = SCRIPT.parent) -> list[str]:
    """COMPREPLY for the command line `memdoor WORDS...`, the cursor on the last word."""
    program = (
        'source "$0"; COMP_WORDS=(memdoor "$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
        '_memdoor; printf "%s\\n" "${COMPREPLY[@]}"; complete -p memdoor >&2'
    )
    result = subprocess.run(
        ["bash", "--norc", "-c", program, str(SCRIPT), *words],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=True,
    )
    assert result.stderr == "complete -F _memdoor memdoor\n"
    return [line for line in result.stdout.splitlines() if line]


def options_of(command: Command) -> set[str]:
    return {name for action in command.build_parser()._actions for name in action.option_strings}


def choices_of(command: Command, option: str) -> set[str]:
    (action,) = [a for a in command.build_parser()._actions if option in a.option_strings]
    return {str(choice) for choice in action.choices or []}


def test_the_first_word_is_a_sub_command_or_a_seed_option() -> None:
    assert set(complete("")) == set(SUBCOMMANDS)
    assert complete("ch") == ["check-config"]
    assert set(complete("-")) == options_of(SEED)
    assert set(complete("--s")) == {"--sort"}


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_each_sub_command_completes_exactly_its_options(name: str) -> None:
    assert set(complete(name, "-")) == options_of(SUBCOMMANDS[name])


def test_values_are_the_parsers_choices() -> None:
    show = SUBCOMMANDS["show"]
    assert set(complete("show", "--event", "")) == {event.value for event in Event}
    assert set(complete("show", "-e", "oom_k")) == {"oom_killed", "oom_kill_nearby"}
    assert set(complete("show", "--color", "")) == choices_of(show, "--color")
    assert complete("show", "--kill", "l") == ["latest"]
    assert set(complete("-p", "1", "--format", "")) == choices_of(SEED, "--format")
    assert (
        set(complete("-p", "1", "--sort", ""))
        == choices_of(SEED, "--sort")
        == {
            "address",
            "rss",
        }
    )
    assert complete("demo", "--seconds", "") == []


def test_files_where_a_file_is_taken(tmp_path: Path) -> None:
    (tmp_path / "app.toml").write_text("")
    (tmp_path / "journal").mkdir()
    assert complete("check-config", "a", cwd=tmp_path) == ["app.toml"]
    assert complete("run", "--config", "a", cwd=tmp_path) == ["app.toml"]
    assert sorted(complete("run", "-c", "", cwd=tmp_path)) == ["app.toml", "journal"]
    assert complete("show", "-D", "", cwd=tmp_path) == ["journal"]
    assert complete("show", "--html", "a", cwd=tmp_path) == ["app.toml"]
    assert "/usr/bin/env" in complete("-p", "1", "-e", "/usr/bin/en")


def test_pids_for_the_seeds_pid() -> None:
    found = complete("--pid", "1")
    assert "1" in found and all(pid.isdigit() and pid.startswith("1") for pid in found)
