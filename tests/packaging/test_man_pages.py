"""memdoor(8) and memdoor.toml(5): rendered by man without warnings, and in step with the
parsers and the config models, so an option or a key added without documenting it fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import BaseModel

from memdoor.cli.commands import SEED, SUBCOMMANDS, Command
from memdoor.config import Config, DaemonConfig, JournaldSettings, StdoutSettings, TargetConfig

MAN = Path(__file__).resolve().parents[2] / "packaging" / "man"
PAGES = [MAN / "memdoor.8", MAN / "memdoor.toml.5"]
# The heading of each command's part of memdoor(8).
COMMAND_HEADINGS = {
    **{name: f"memdoor {name}" for name in SUBCOMMANDS},
    "": "memdoor (the seed command line)",
}
# Choices listed in full; an option with more (show --event) names a few.
MAX_LISTED_CHOICES = 5


def render(page: Path) -> str:
    """The page as man shows it, plain text, wide enough that no option is broken."""
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (tests/run.sh installs groff-base)")
    result = subprocess.run(
        ["groff", "-man", "-Tutf8", "-P-cbou", "-rLL=200n", "-ww", str(page)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr == "", result.stderr
    return result.stdout


def parts(text: str, headings: list[str]) -> dict[str, str]:
    """The text under each heading, up to the next one: a heading is a line of its own,
    at the margin (.SH) or indented 3 (.SS), where no other text is set."""
    lines = text.splitlines()
    starts = {}
    for heading in headings:
        found = [i for i, line in enumerate(lines) if line.rstrip() in (heading, "   " + heading)]
        assert found, f"no heading {heading!r}"
        starts[heading] = found[0]
    ordered = [*sorted(starts.values()), len(lines)]
    return {
        heading: "\n".join(lines[start : ordered[ordered.index(start) + 1]])
        for heading, start in starts.items()
    }


def undocumented_options(command: Command, text: str) -> list[str]:
    missing = []
    for action in command.build_parser()._actions:
        names = [name for name in action.option_strings if name not in ("-h", "--help")]
        choices = list(action.choices or []) if action.option_strings else []
        if len(choices) > MAX_LISTED_CHOICES:
            choices = []
        for word in names + [str(choice) for choice in choices]:
            if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is None:
                missing.append(word)
    return missing


def undocumented_keys(model: type[BaseModel], text: str) -> list[str]:
    """Keys that are not the tag of a paragraph: at the start of a line indented 7, as
    man sets tags, or in a tag that lists several keys ("threshold, interval")."""
    return [
        key
        for key in model.model_fields
        if re.search(rf"^ {{7}}(?:\w+, )*{key}(?![\w\"])", text, re.M) is None
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_man_renders_the_page(page: Path) -> None:
    if shutil.which("man") is None:
        pytest.skip("man is not installed (tests/run.sh installs man-db)")
    result = subprocess.run(
        ["man", "-l", str(page)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "100"},
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    name = page.name.rsplit(".", 1)[0].upper()
    assert result.stdout.startswith(f"{name}(") and "NAME" in result.stdout


def test_every_option_of_every_command_is_in_memdoor_8() -> None:
    text = render(MAN / "memdoor.8")
    assert "-h, --help" in text
    by_heading = parts(text, list(COMMAND_HEADINGS.values()))
    commands = {**SUBCOMMANDS, "": SEED}
    missing = {
        name or "(seed)": undocumented_options(command, by_heading[COMMAND_HEADINGS[name]])
        for name, command in commands.items()
    }
    assert missing == {name: [] for name in missing}
    # The check itself can fail: another command's part lacks run's --config.
    assert undocumented_options(SUBCOMMANDS["run"], by_heading["memdoor demo"]) == [
        "--config",
        "-c",
    ]


def test_every_config_key_is_in_memdoor_toml_5() -> None:
    text = render(MAN / "memdoor.toml.5")
    tables: dict[str, type[BaseModel]] = {
        "[daemon]": DaemonConfig,
        "[sinks.stdout]": StdoutSettings,
        "[sinks.journald]": JournaldSettings,
        "[[target]]": TargetConfig,
    }
    by_heading = parts(text, list(tables))
    missing = {
        heading: undocumented_keys(model, by_heading[heading]) for heading, model in tables.items()
    }
    assert missing == {heading: [] for heading in tables}
    # Every table of the file has its section, and the check can fail.
    assert set(Config.model_fields) == {"daemon", "sinks", "targets"}
    assert undocumented_keys(TargetConfig, by_heading["[daemon]"]) == [
        "name",
        "pid",
        "pidfile",
        "pidfile_owner",
        "exe",
        "cmdline",
        "unit",
        "cgroup",
        "count",
        "sections",
    ]
