"""The configuration file: what loads, what is refused, and how the refusal reads.

Files are real files read through load_config (the kernel decides what "missing",
"a directory" and "permission denied" mean); the property test goes through
parse_config, the same code minus the read.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pwd
import re
import string
import sys
import tempfile
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memdoor.config import (
    EX_CONFIG,
    INHERITED_KEYS,
    PID_MAX_LIMIT,
    SELECTOR_KEYS,
    Config,
    ConfigError,
    ConfigProblem,
    DaemonConfig,
    InheritedSettings,
    JournaldSettings,
    ResolvedTarget,
    SinksConfig,
    StdoutSettings,
    TargetConfig,
    effective_targets,
    load_config,
    parse_config,
    render_effective,
    running_config,
)
from memdoor.config.problems import RECORDED_PROBLEMS, RECORDED_TEXT_LIMIT
from memdoor.vocabulary import ALL_SECTIONS

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "memdoor" / "example.toml"

# A valid [[target]] that single-error cases extend by one key.
APP = '[[target]]\nname = "app"\n'
APP_EXE = APP + 'exe = "/usr/bin/app"\n'


@pytest.fixture
def config_dir() -> Iterator[Path]:
    """A private directory under /tmp, removed afterwards; not tmp_path, which pytest
    keeps around and which sits under a root-only directory."""
    with tempfile.TemporaryDirectory(prefix="memdoor-config-") as name:
        yield Path(name)


def write(directory: Path, text: str, name: str = "memdoor.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(directory: Path, text: str) -> list[tuple[str, str]]:
    path = write(directory, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == str(path)
    return [(problem.key_path, problem.reason) for problem in caught.value.problems]


def test_ex_config_is_sysexits_value() -> None:
    assert EX_CONFIG == 78 == os.EX_CONFIG


def test_shipped_example_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.daemon == DaemonConfig()
    assert config.sinks == SinksConfig()
    # The target sets its name and exe alone: every other key shows its default.
    assert config.targets == (TargetConfig(name="cron", exe="/usr/sbin/cron"),)
    assert effective_targets(config) == [
        ResolvedTarget(
            name="cron",
            pid=None,
            pidfile=None,
            exe="/usr/sbin/cron",
            threshold=50,
            threshold_base="any",
            interval=5.0,
            min_interval=0.1,
            detail="summary",
            full_snapshot_min_interval=300.0,
            full_snapshot_growth=20,
            full_snapshot_on_change=True,
            count=None,
            sections=ALL_SECTIONS,
        )
    ]


def _example_target_text() -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    return text[text.index("\n[[target]]\n") :]


DEFAULT_SHOWN = re.compile(r"^# ([a-z_]+) = (.+)$", re.MULTILINE)
EXAMPLE_SHOWN = re.compile(r"^#   ([a-z_]+) = ", re.MULTILINE)


def test_shipped_example_shows_every_key() -> None:
    """The example is the operator's reference: a key added to the schema but not to
    the example fails here."""
    text = EXAMPLE.read_text(encoding="utf-8")
    raw = tomllib.loads(text)
    assert set(raw) == {"daemon", "sinks", "target"}
    assert set(raw["daemon"]) == set(DaemonConfig.model_fields)
    assert set(raw["sinks"]) == set(SinksConfig.model_fields)
    assert set(raw["sinks"]["stdout"]) == set(StdoutSettings.model_fields)
    assert set(raw["sinks"]["journald"]) == set(JournaldSettings.model_fields)
    (target,) = raw["target"]
    target_text = _example_target_text()
    defaults = {key for key, _ in DEFAULT_SHOWN.findall(target_text)}
    examples = set(EXAMPLE_SHOWN.findall(target_text))
    assert set(target) == {"name", "exe"}
    # Every other key either shows the default that applies, or, having none, an example.
    assert defaults == set(INHERITED_KEYS) | {"sections"}
    assert examples == set(SELECTOR_KEYS) | {"pidfile_owner", "cmdline", "unit", "cgroup", "count"}
    assert set(target) | defaults | examples == set(TargetConfig.model_fields)


def test_uncommenting_the_examples_defaults_changes_nothing(config_dir: Path) -> None:
    """What the example says: each commented target key shows the value that applies
    while it is absent, so the file with all of them set loads to the same targets."""
    text = EXAMPLE.read_text(encoding="utf-8")
    uncommented = DEFAULT_SHOWN.sub(r"\1 = \2", text)
    assert uncommented != text
    assert tomllib.loads(uncommented)["target"][0].keys() >= set(INHERITED_KEYS)
    assert effective_targets(load_config(write(config_dir, uncommented))) == effective_targets(
        load_config(EXAMPLE)
    )


def test_empty_file_gives_defaults(config_dir: Path) -> None:
    config = load_config(write(config_dir, ""))
    assert config.daemon.interval == 5.0
    assert config.daemon.threshold == 50
    assert config.daemon.watchdog is True
    assert config.daemon.redact_cmdline is False
    assert config.sinks.stdout.enabled is True
    assert config.sinks.journald.enabled == "auto"
    assert config.sinks.journald.socket == "/run/systemd/journal/socket"
    assert config.targets == ()
    assert effective_targets(config) == []


def test_empty_target_list_is_allowed(config_dir: Path) -> None:
    assert load_config(write(config_dir, "target = []\n")).targets == ()


def test_targets_inherit_daemon_defaults(config_dir: Path) -> None:
    text = (
        "[daemon]\ninterval = 3\nthreshold = 70\n"
        '[[target]]\nname = "own"\npid = 42\nthreshold = 20\ninterval = 0.05\n'
        'count = 3\nsections = ["tree", "memory"]\n'
        '[[target]]\nname = "inherits"\npidfile = "/run/app.pid"\n'
    )
    own, inherits = effective_targets(load_config(write(config_dir, text)))
    # min_interval never exceeds the target's own interval.
    defaults = {
        "threshold_base": "any",
        "detail": "summary",
        "full_snapshot_min_interval": 300.0,
        "full_snapshot_growth": 20,
        "full_snapshot_on_change": True,
    }
    assert own == ResolvedTarget(
        name="own",
        pid=42,
        pidfile=None,
        exe=None,
        threshold=20,
        interval=0.05,
        min_interval=0.05,
        count=3,
        sections=("tree", "memory"),
        **defaults,
    )
    assert inherits == ResolvedTarget(
        name="inherits",
        pid=None,
        pidfile="/run/app.pid",
        exe=None,
        threshold=70,
        interval=3.0,
        min_interval=0.1,
        count=None,
        sections=ALL_SECTIONS,
        **defaults,
    )
    assert isinstance(inherits.interval, float)


def test_inherited_keys_are_listed_alike_wherever_they_appear() -> None:
    """The keys a target inherits are declared in InheritedSettings and again, as
    optional overrides, in TargetConfig: a key added to one and not the other, or
    given another type, fails here."""
    inherited = typing.get_type_hints(InheritedSettings, include_extras=True)
    overrides = typing.get_type_hints(TargetConfig, include_extras=True)
    assert set(TargetConfig.model_fields) & set(DaemonConfig.model_fields) == set(INHERITED_KEYS)
    for key in INHERITED_KEYS:
        assert overrides[key] == typing.Optional[inherited[key]], key
        assert TargetConfig.model_fields[key].default is None, key
    # A resolved target keeps every key a target has, inherited or its own.
    assert set(ResolvedTarget.model_fields) == set(TargetConfig.model_fields)


# A value other than the default for every inherited key, for the daemon and a target.
DAEMON_SETTINGS = {
    "interval": 7.0,
    "threshold": 60,
    "threshold_base": "cgroup",
    "min_interval": 0.5,
    "detail": "full",
    "full_snapshot_min_interval": 60.0,
    "full_snapshot_growth": 5,
    "full_snapshot_on_change": False,
}
OWN_SETTINGS = {
    "interval": 2.0,
    "threshold": 30,
    "threshold_base": "system",
    "min_interval": 1.0,
    "detail": "summary",
    "full_snapshot_min_interval": 30.0,
    "full_snapshot_growth": 50,
    "full_snapshot_on_change": True,
}


def toml_lines(settings: dict[str, object]) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())


def test_every_inherited_key_comes_from_the_target_or_else_the_daemon(config_dir: Path) -> None:
    assert set(DAEMON_SETTINGS) == set(OWN_SETTINGS) == set(INHERITED_KEYS)
    text = (
        "[daemon]\n"
        + toml_lines(DAEMON_SETTINGS)
        + APP_EXE
        + '[[target]]\nname = "own"\npid = 1\n'
        + toml_lines(OWN_SETTINGS)
    )
    inherits, own = effective_targets(load_config(write(config_dir, text)))
    assert inherits.model_dump(include=set(INHERITED_KEYS)) == DAEMON_SETTINGS
    assert own.model_dump(include=set(INHERITED_KEYS)) == OWN_SETTINGS


def test_resolved_targets_are_frozen_and_typed() -> None:
    (target,) = effective_targets(Config.model_validate({"target": [{"name": "x", "pid": 1}]}))
    with pytest.raises(ValidationError, match="frozen"):
        target.threshold = 60
    with pytest.raises(ValidationError):
        ResolvedTarget(**{**target.model_dump(), "threshold": "60"})


def test_journald_enabled_accepts_bools(config_dir: Path) -> None:
    for value in (True, False):
        text = f"[sinks.journald]\nenabled = {'true' if value else 'false'}\n"
        assert load_config(write(config_dir, text)).sinks.journald.enabled is value


@pytest.mark.parametrize(
    ("text", "key_path", "reason"),
    [
        ("[daemon]\ninterval = 0\n", "daemon.interval", "must be at least 0.05 (got 0)"),
        ("[daemon]\ninterval = -1.5\n", "daemon.interval", "must be at least 0.05 (got -1.5)"),
        ("[daemon]\ninterval = nan\n", "daemon.interval", "must be a finite number (got nan)"),
        ("[daemon]\ninterval = inf\n", "daemon.interval", "must be a finite number (got inf)"),
        ('[daemon]\ninterval = "5"\n', "daemon.interval", 'expected a number (got "5")'),
        ("[daemon]\ninterval = true\n", "daemon.interval", "expected a number (got true)"),
        ("[daemon]\nthreshold = 0\n", "daemon.threshold", "must be between 1 and 99 (got 0)"),
        ("[daemon]\nthreshold = 100\n", "daemon.threshold", "must be between 1 and 99 (got 100)"),
        ("[daemon]\nthreshold = 50.0\n", "daemon.threshold", "expected an integer (got 50.0)"),
        ('[daemon]\nthreshold = "50"\n', "daemon.threshold", 'expected an integer (got "50")'),
        ('[daemon]\nwatchdog = "yes"\n', "daemon.watchdog", 'expected true or false (got "yes")'),
        (
            "[daemon]\nredact_cmdline = 1\n",
            "daemon.redact_cmdline",
            "expected true or false (got 1)",
        ),
        (
            '[sinks.stdout]\nenabled = "auto"\n',
            "sinks.stdout.enabled",
            'expected true or false (got "auto")',
        ),
        (
            '[sinks.journald]\nenabled = "yes"\n',
            "sinks.journald.enabled",
            'must be true, false or "auto" (got "yes")',
        ),
        (
            "[sinks.journald]\nenabled = 1\n",
            "sinks.journald.enabled",
            'must be true, false or "auto" (got 1)',
        ),
        (
            '[sinks.journald]\nsocket = "journal.sock"\n',
            "sinks.journald.socket",
            'must be an absolute path (got "journal.sock")',
        ),
        ("daemon = 5\n", "daemon", "expected a table (got 5)"),
        ("[sinks]\nstdout = true\n", "sinks.stdout", "expected a table (got true)"),
        ("target = 5\n", "target", "expected an array of tables, written [[target]] (got 5)"),
        (
            '[target]\nname = "app"\n',
            "target",
            "expected an array of tables, written [[target]] (got a table)",
        ),
        ("target = [5]\n", "target[0]", "expected a table (got 5)"),
        (
            APP + "pid = true\n",
            'target[0] (name="app").pid',
            "expected an integer (got true)",
        ),
        (
            APP + "pid = 0\n",
            'target[0] (name="app").pid',
            f"must be between 1 and {PID_MAX_LIMIT} (got 0)",
        ),
        (
            APP + f"pid = {PID_MAX_LIMIT + 1}\n",
            'target[0] (name="app").pid',
            f"must be between 1 and {PID_MAX_LIMIT} (got {PID_MAX_LIMIT + 1})",
        ),
        (
            APP + 'pidfile = "run/app.pid"\n',
            'target[0] (name="app").pidfile',
            'must be an absolute path (got "run/app.pid")',
        ),
        (
            APP + 'exe = "/usr/bin/a\\u0000b"\n',
            'target[0] (name="app").exe',
            'must not contain a NUL character (got "/usr/bin/a\\u0000b")',
        ),
        (
            APP_EXE + 'threshold = "50"\n',
            'target[0] (name="app").threshold',
            'expected an integer (got "50")',
        ),
        (
            APP_EXE + "threshold = 150\n",
            'target[0] (name="app").threshold',
            "must be between 1 and 99 (got 150)",
        ),
        (
            APP_EXE + "interval = 0.01\n",
            'target[0] (name="app").interval',
            "must be at least 0.05 (got 0.01)",
        ),
        (
            APP_EXE + "count = 0\n",
            'target[0] (name="app").count',
            "must be at least 1 (got 0)",
        ),
        (
            APP_EXE + "count = 1.5\n",
            'target[0] (name="app").count',
            "expected an integer (got 1.5)",
        ),
        (
            APP_EXE + "sections = []\n",
            'target[0] (name="app").sections',
            "must not be empty (got [])",
        ),
        (
            APP_EXE + 'sections = "memory"\n',
            'target[0] (name="app").sections',
            'expected an array (got "memory")',
        ),
        (
            APP_EXE + 'sections = ["tree", "oom", "tree"]\n',
            'target[0] (name="app").sections',
            'lists "tree" twice (got ["tree", "oom", "tree"])',
        ),
        (
            APP_EXE + 'sections = ["memory", "heap"]\n',
            'target[0] (name="app").sections[1]',
            "must be one of 'memory', 'oom', 'tree', 'mappings' or 'connections' (got \"heap\")",
        ),
        (
            '[[target]]\nname = "my app"\npid = 1\n',
            'target[0] (name="my app").name',
            'must be 1 to 64 characters from A-Z a-z 0-9 _ . @ - (got "my app")',
        ),
        (
            f'[[target]]\nname = "{"n" * 65}"\npid = 1\n',
            f'target[0] (name="{"n" * 65}").name',
            f'must be 1 to 64 characters from A-Z a-z 0-9 _ . @ - (got "{"n" * 56}...)',
        ),
        (
            "[[target]]\nname = 7\npid = 1\n",
            "target[0].name",
            "expected a string (got 7)",
        ),
        ("[[target]]\npid = 1\n", "target[0].name", "is required"),
        (
            APP + 'pidfile = "/run/app.pid"\npidfile_owner = "no-such-user-memdoor"\n',
            'target[0] (name="app").pidfile_owner',
            'no user of this name on this host (got "no-such-user-memdoor")',
        ),
        (
            APP + 'pidfile = "/run/app.pid"\npidfile_owner = 65534\n',
            'target[0] (name="app").pidfile_owner',
            "expected a string (got 65534)",
        ),
        (
            APP_EXE + 'pidfile_owner = "nobody"\n',
            'target[0] (name="app").pidfile_owner',
            "applies only to a pidfile target (this target has no pidfile)",
        ),
    ],
)
def test_single_problem(config_dir: Path, text: str, key_path: str, reason: str) -> None:
    assert problems_of(config_dir, text) == [(key_path, reason)]


def test_int_accepted_where_a_number_is_expected(config_dir: Path) -> None:
    config = load_config(write(config_dir, "[daemon]\ninterval = 2\n" + APP_EXE + "interval = 1\n"))
    assert config.daemon.interval == 2.0
    assert config.targets[0].interval == 1.0


@pytest.mark.parametrize(
    ("text", "key_path", "reason"),
    [
        ("verbose = true\n", "", "unknown key 'verbose'"),
        ('[[targets]]\nname = "app"\n', "", "unknown key 'targets' (did you mean 'target'?)"),
        (
            "[daemon]\nthresold = 50\n",
            "daemon",
            "unknown key 'thresold' (did you mean 'threshold'?)",
        ),
        ("[daemon.extra]\nx = 1\n", "daemon", "unknown key 'extra'"),
        ("[sinks.syslog]\nenabled = true\n", "sinks", "unknown key 'syslog'"),
        (
            "[sinks.stdout]\nenable = true\n",
            "sinks.stdout",
            "unknown key 'enable' (did you mean 'enabled'?)",
        ),
        (
            '[sinks.journald]\nsock = "/x"\n',
            "sinks.journald",
            "unknown key 'sock' (did you mean 'socket'?)",
        ),
        (APP_EXE + "color = 1\n", 'target[0] (name="app")', "unknown key 'color'"),
    ],
)
def test_unknown_keys_at_every_level(
    config_dir: Path, text: str, key_path: str, reason: str
) -> None:
    assert problems_of(config_dir, text) == [(key_path, reason)]


@pytest.mark.parametrize(
    ("selectors", "got"),
    [
        ("", "none"),
        ('pid = 1\nexe = "/usr/bin/app"\n', "pid, exe"),
        ('exe = "/usr/bin/app"\npidfile = "/run/app.pid"\n', "pidfile, exe"),
        ('pid = 1\npidfile = "/run/app.pid"\nexe = "/usr/bin/app"\n', "pid, pidfile, exe"),
    ],
)
def test_exactly_one_selector(config_dir: Path, selectors: str, got: str) -> None:
    text = '[[target]]\nname = "ok"\npid = 1\n' + APP + selectors
    assert problems_of(config_dir, text) == [
        ('target[1] (name="app")', f"exactly one of pid, pidfile, exe is required (got {got})")
    ]


def test_duplicate_target_names(config_dir: Path) -> None:
    text = "".join(
        f'[[target]]\nname = "{name}"\npid = {pid}\n'
        for pid, name in enumerate(["a", "b", "c", "b", "a"], start=1)
    )
    assert problems_of(config_dir, text) == [
        ('target[3] (name="b").name', 'duplicate name "b" (already used by target[1])'),
        ('target[4] (name="a").name', 'duplicate name "a" (already used by target[0])'),
    ]


def test_every_problem_reported_at_once(config_dir: Path) -> None:
    """Cross-field problems (selectors, duplicate names) must show up even next to
    ordinary field errors in the same target, which stop pydantic's own checks."""
    text = """\
verbose = 1

[daemon]
interval = 0
thresold = 40

[sinks.journald]
enabled = "yes"

[[target]]
name = "db"
pid = true
exe = "/usr/sbin/db"
threshold = 150

[[target]]
name = "web"
pidfile = "/run/web.pid"
sections = ["memory", "heap"]

[[target]]
name = "db"
count = 0
"""
    assert problems_of(config_dir, text) == [
        ("", "unknown key 'verbose'"),
        ("daemon.interval", "must be at least 0.05 (got 0)"),
        ("daemon", "unknown key 'thresold' (did you mean 'threshold'?)"),
        ("sinks.journald.enabled", 'must be true, false or "auto" (got "yes")'),
        ('target[0] (name="db").pid', "expected an integer (got true)"),
        ('target[0] (name="db").threshold', "must be between 1 and 99 (got 150)"),
        ('target[0] (name="db")', "exactly one of pid, pidfile, exe is required (got pid, exe)"),
        (
            'target[1] (name="web").sections[1]',
            "must be one of 'memory', 'oom', 'tree', 'mappings' or 'connections' (got \"heap\")",
        ),
        ('target[2] (name="db").count', "must be at least 1 (got 0)"),
        ('target[2] (name="db")', "exactly one of pid, pidfile, exe is required (got none)"),
        ('target[2] (name="db").name', 'duplicate name "db" (already used by target[0])'),
    ]


def test_error_text_and_record(config_dir: Path) -> None:
    path = write(config_dir, "bogus = 1\n[daemon]\nthreshold = 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    error = caught.value
    assert str(error).splitlines() == [
        f"{path}: unknown key 'bogus'",
        f"{path}: daemon.threshold: must be between 1 and 99 (got 0)",
    ]
    record = error.record_fields()
    assert json.loads(json.dumps(record)) == {
        "file": str(path),
        "errors": [
            {"key": "", "reason": "unknown key 'bogus'"},
            {"key": "daemon.threshold", "reason": "must be between 1 and 99 (got 0)"},
        ],
    }


def many_problems(count: int) -> ConfigError:
    return ConfigError(
        "/etc/memdoor/x.toml",
        [ConfigProblem(f"target[{i}].threshold", f"problem {i}") for i in range(count)],
    )


def test_a_record_lists_at_most_the_first_problems() -> None:
    total = RECORDED_PROBLEMS + 7
    error = many_problems(total)
    fields = error.record_fields()
    assert fields["errors"] == [
        {"key": f"target[{i}].threshold", "reason": f"problem {i}"}
        for i in range(RECORDED_PROBLEMS)
    ]
    assert fields["more_errors"] == 7
    assert len(str(error).splitlines()) == total


def test_more_errors_only_when_some_were_left_out() -> None:
    assert "more_errors" not in many_problems(RECORDED_PROBLEMS).record_fields()


def test_a_record_cuts_long_keys_and_reasons() -> None:
    long_key, long_reason = "k" * 5000, "r" * 5000
    error = ConfigError("/x.toml", [ConfigProblem(long_key, long_reason)])
    (recorded,) = error.record_fields()["errors"]
    assert len(recorded["key"]) == len(recorded["reason"]) == RECORDED_TEXT_LIMIT
    assert recorded["key"].startswith("kkk") and recorded["key"].endswith("...")
    assert recorded["reason"].startswith("rrr") and recorded["reason"].endswith("...")
    assert str(error) == f"/x.toml: {long_key}: {long_reason}"


def test_message_describes_the_recorded_problems() -> None:
    error = ConfigError("/x.toml", [ConfigProblem("", "bad"), ConfigProblem("daemon", "worse")])
    assert error.message("not started") == (
        "/x.toml: invalid configuration, not started: /x.toml: bad; /x.toml: daemon: worse"
    )


def test_message_counts_the_problems_left_out() -> None:
    message = many_problems(RECORDED_PROBLEMS + 300).message("keeping the running one")
    assert message.startswith(
        "/etc/memdoor/x.toml: invalid configuration, keeping the running one: "
    )
    described = message.split("; ")
    assert len(described) == RECORDED_PROBLEMS + 1
    assert described[RECORDED_PROBLEMS - 1].endswith(f"problem {RECORDED_PROBLEMS - 1}")
    assert described[-1] == "… and 300 more"


@pytest.mark.parametrize("depth", range(50, 2050, 50))
def test_deep_nesting_is_a_config_error(config_dir: Path, depth: int) -> None:
    """The parser and the problem wording both recurse per level; at no depth may
    the stack's limit escape as a traceback."""
    nested = "[" * depth + "]" * depth
    problems = problems_of(config_dir, f"[daemon]\ninterval = {nested}\n")
    assert len(problems) == 1
    key_path, reason = problems[0]
    assert (key_path, reason) in {
        ("", "not valid TOML: arrays or tables nested too deeply"),
        ("", "arrays or tables nested too deeply"),
    } or (key_path == "daemon.interval" and reason.startswith("expected a number (got [[["))


def test_deep_inline_tables_are_a_config_error(config_dir: Path) -> None:
    text = "x = " + "{a = " * 2000 + "1" + "}" * 2000 + "\n"
    assert problems_of(config_dir, text) == [
        ("", "not valid TOML: arrays or tables nested too deeply")
    ]


def test_an_integer_of_thousands_of_digits_is_a_config_error(config_dir: Path) -> None:
    (problem,) = problems_of(config_dir, "[daemon]\nthreshold = " + "9" * 5000 + "\n")
    if hasattr(sys, "get_int_max_str_digits"):
        # int() refuses that many decimal digits (3.11, and security releases of older
        # versions); the parser lets its ValueError through.
        assert problem[0] == ""
        assert problem[1].startswith("not valid TOML: Exceeds the limit")
    else:
        assert problem == ("daemon.threshold", f"must be between 1 and 99 (got {'9' * 57}...)")


def test_a_huge_hex_integer_is_shown_in_hex(config_dir: Path) -> None:
    """Hex integers have no digit limit, and the problem's quote of the value must
    not ask Python for its thousands of decimal digits."""
    assert problems_of(config_dir, APP + "pid = 0x" + "f" * 5000 + "\n") == [
        (
            'target[0] (name="app").pid',
            f"must be between 1 and {PID_MAX_LIMIT} (got 0x{'f' * 55}...)",
        )
    ]


def test_an_unforeseen_value_error_in_validation_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: object) -> typing.NoReturn:
        raise ValueError("Exceeds the limit (4300 digits) for integer string conversion")

    monkeypatch.setattr("memdoor.config.load.validation_problems", refuse)
    with pytest.raises(ConfigError) as caught:
        parse_config(b"[daemon]\nthreshold = 0\n", "/x.toml")
    assert caught.value.problems == [
        ConfigProblem("", "Exceeds the limit (4300 digits) for integer string conversion")
    ]


def test_toml_syntax_error_names_the_line(config_dir: Path) -> None:
    problems = problems_of(config_dir, "[daemon]\ninterval = 5\nthreshold = = 3\n")
    assert len(problems) == 1
    key_path, reason = problems[0]
    assert key_path == ""
    assert reason.startswith("not valid TOML: ")
    assert "line 3" in reason


def test_toml_duplicate_key_is_a_syntax_error(config_dir: Path) -> None:
    (problem,) = problems_of(config_dir, "[daemon]\nthreshold = 5\nthreshold = 6\n")
    assert problem[1].startswith("not valid TOML: ")
    assert "line 3" in problem[1]


def test_invalid_utf8_names_the_byte(config_dir: Path) -> None:
    path = config_dir / "latin1.toml"
    path.write_bytes("[daemon]\n# caf\u00e9\nthreshold = 5\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        ConfigProblem("", "not valid UTF-8: byte 0xe9 at line 2, column 6")
    ]


def test_missing_file(config_dir: Path) -> None:
    path = config_dir / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == str(path)
    assert caught.value.problems == [
        ConfigProblem("", "cannot read the file: No such file or directory")
    ]
    assert str(caught.value) == f"{path}: cannot read the file: No such file or directory"


def test_directory_instead_of_file(config_dir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(config_dir)
    assert caught.value.problems == [ConfigProblem("", "cannot read the file: Is a directory")]


@contextlib.contextmanager
def unable_to_override_permissions() -> Iterator[None]:
    """Root reads a mode-000 file anyway (CAP_DAC_OVERRIDE); as root, switch the
    effective uid to nobody for the read, which drops those capabilities, so the
    kernel really refuses. The real uid stays 0, which lets us switch back."""
    if os.geteuid() != 0:
        yield
        return
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("running as root and there is no 'nobody' user to drop privileges to")
    os.seteuid(nobody)
    try:
        yield
    finally:
        os.seteuid(0)


def test_permission_denied(config_dir: Path) -> None:
    config_dir.chmod(0o711)  # nobody may traverse the directory; only the file refuses
    path = write(config_dir, "")
    path.chmod(0o000)
    with unable_to_override_permissions(), pytest.raises(ConfigError) as caught:
        load_config(path)
    assert os.geteuid() == os.getuid()
    assert caught.value.problems == [ConfigProblem("", "cannot read the file: Permission denied")]


def roundtrip(config_dir: Path, config: Config) -> Config:
    return load_config(write(config_dir, render_effective(config), name="effective.toml"))


def test_render_effective_round_trips_the_example(config_dir: Path) -> None:
    config = load_config(EXAMPLE)
    assert roundtrip(config_dir, config) == config


def test_render_effective_fills_in_defaults(config_dir: Path) -> None:
    config = load_config(write(config_dir, APP_EXE))
    rendered = render_effective(config)
    raw = tomllib.loads(rendered)
    assert raw["daemon"] == {
        "interval": 5.0,
        "threshold": 50,
        "threshold_base": "any",
        "min_interval": 0.1,
        "detail": "summary",
        "full_snapshot_min_interval": 300.0,
        "full_snapshot_growth": 20,
        "full_snapshot_on_change": True,
        "watchdog": True,
        "redact_cmdline": False,
    }
    assert raw["sinks"] == {
        "stdout": {"enabled": True, "format": "memdoor"},
        "journald": {
            "enabled": "auto",
            "socket": "/run/systemd/journal/socket",
            "format": "memdoor",
        },
    }
    assert raw["target"] == [{"name": "app", "exe": "/usr/bin/app"}]
    assert "# threshold = 50  (from daemon.threshold)" in rendered.splitlines()
    assert "# interval = 5.0  (from daemon.interval)" in rendered.splitlines()
    assert '# threshold_base = "any"  (from daemon.threshold_base)' in rendered.splitlines()
    assert roundtrip(config_dir, config) == config


def test_render_effective_without_targets(config_dir: Path) -> None:
    config = load_config(write(config_dir, "[daemon]\nwatchdog = false\n"))
    rendered = render_effective(config)
    assert "# No [[target]]: the daemon watches nothing." in rendered.splitlines()
    assert roundtrip(config_dir, config) == config


NAME_CHARACTERS = string.ascii_letters + string.digits + "_.@-"


def _path_text() -> st.SearchStrategy[str]:
    characters = st.characters(exclude_categories=["Cs"], exclude_characters="\0")
    return st.text(characters, max_size=40).map(lambda tail: "/" + tail)


def _target() -> st.SearchStrategy[dict[str, object]]:
    selector = st.one_of(
        st.fixed_dictionaries({"pid": st.integers(1, PID_MAX_LIMIT)}),
        st.fixed_dictionaries(
            {"pidfile": _path_text()},
            optional={"pidfile_owner": st.sampled_from(["root", "nobody"])},
        ),
        st.fixed_dictionaries({"exe": _path_text()}),
    )
    rest = st.fixed_dictionaries(
        {"name": st.text(NAME_CHARACTERS, min_size=1, max_size=64)},
        optional={
            "threshold": st.integers(1, 99),
            "interval": st.floats(min_value=0.05, allow_nan=False, allow_infinity=False),
            "count": st.integers(1, 2**63 - 1),
            "sections": st.lists(st.sampled_from(ALL_SECTIONS), min_size=1, unique=True),
        },
    )
    return st.builds(lambda a, b: {**a, **b}, selector, rest)


_raw_configs = st.fixed_dictionaries(
    {},
    optional={
        "daemon": st.fixed_dictionaries(
            {},
            optional={
                "interval": st.one_of(
                    st.integers(1, 3600),
                    st.floats(min_value=0.05, allow_nan=False, allow_infinity=False),
                ),
                "threshold": st.integers(1, 99),
                "watchdog": st.booleans(),
                "redact_cmdline": st.booleans(),
            },
        ),
        "sinks": st.fixed_dictionaries(
            {},
            optional={
                "stdout": st.fixed_dictionaries({}, optional={"enabled": st.booleans()}),
                "journald": st.fixed_dictionaries(
                    {},
                    optional={
                        "enabled": st.sampled_from([True, False, "auto"]),
                        "socket": _path_text(),
                    },
                ),
            },
        ),
        "target": st.lists(_target(), max_size=4, unique_by=lambda target: target["name"]),
    },
)


# No deadline: a first example that also resolves a user name can take longer than
# hypothesis's 200 ms on a loaded machine, which says nothing about the round trip.
@settings(database=None, deadline=None)
@given(_raw_configs)
def test_render_effective_round_trips_any_valid_config(raw: dict[str, object]) -> None:
    """Paths with quotes, backslashes and control characters, huge and tiny floats:
    whatever validates must render to TOML that loads back to the same Config."""
    config = Config.model_validate(raw)
    rendered = render_effective(config)
    assert parse_config(rendered.encode("utf-8"), "<rendered>") == config


def test_unchanged_targets_are_equal_across_loads(config_dir: Path) -> None:
    """Reload diffing relies on value equality and hashing of targets."""
    base = (
        '[[target]]\nname = "a"\nexe = "/usr/bin/a"\nsections = ["memory"]\n'
        '[[target]]\nname = "b"\npid = 10\nthreshold = 60\n'
    )
    first = load_config(write(config_dir, base))
    second = load_config(write(config_dir, base))
    assert first is not second
    assert first == second
    assert hash(first) == hash(second)
    assert set(first.targets) == set(second.targets)
    assert set(effective_targets(first)) == set(effective_targets(second))

    changed = load_config(write(config_dir, base.replace("threshold = 60", "threshold = 70")))
    assert changed != first
    assert set(changed.targets) - set(first.targets) == {changed.targets[1]}
    assert changed.targets[0] == first.targets[0]
    assert hash(changed.targets[0]) == hash(first.targets[0])


def test_daemon_default_change_changes_inheriting_targets(config_dir: Path) -> None:
    base = APP_EXE + '[[target]]\nname = "fixed"\npid = 10\nthreshold = 60\n'
    before = effective_targets(load_config(write(config_dir, base)))
    after = effective_targets(load_config(write(config_dir, "[daemon]\nthreshold = 90\n" + base)))
    assert set(after) - set(before) == {after[0]}
    assert after[0].threshold == 90
    assert after[1] == before[1]


def test_models_enforce_cross_field_rules_outside_the_loader() -> None:
    """Configs built in code (tests, tools) get the same guarantees as loaded ones."""
    with pytest.raises(ValidationError, match="exactly one of pid, pidfile, exe"):
        TargetConfig.model_validate({"name": "x", "pid": 1, "exe": "/bin/x"})
    with pytest.raises(ValidationError, match='duplicate name "x"'):
        Config.model_validate({"target": [{"name": "x", "pid": 1}, {"name": "x", "pid": 2}]})


def test_pidfile_owner_reaches_the_resolved_target_and_check_config(config_dir: Path) -> None:
    text = (
        APP
        + 'pidfile = "/run/app/app.pid"\npidfile_owner = "nobody"\n'
        + APP_EXE.replace('"app"', '"other"', 1)
    )
    config = load_config(write(config_dir, text))
    owned, other = effective_targets(config)
    assert (owned.pidfile, owned.pidfile_owner) == ("/run/app/app.pid", "nobody")
    assert other.pidfile_owner is None
    rendered = render_effective(config).splitlines()
    assert (
        rendered[rendered.index('pidfile = "/run/app/app.pid"') + 1] == 'pidfile_owner = "nobody"'
    )
    assert roundtrip(config_dir, config) == config


def test_pidfile_owner_without_pidfile_is_reported_beside_other_problems(config_dir: Path) -> None:
    text = APP_EXE + 'threshold = 150\npidfile_owner = "no-such-user-memdoor"\n'
    assert problems_of(config_dir, text) == [
        (
            'target[0] (name="app").pidfile_owner',
            'no user of this name on this host (got "no-such-user-memdoor")',
        ),
        ('target[0] (name="app").threshold', "must be between 1 and 99 (got 150)"),
        (
            'target[0] (name="app").pidfile_owner',
            "applies only to a pidfile target (this target has no pidfile)",
        ),
    ]


def test_the_model_refuses_pidfile_owner_without_pidfile_outside_the_loader() -> None:
    with pytest.raises(ValidationError, match="applies only to a pidfile target"):
        TargetConfig.model_validate({"name": "x", "exe": "/bin/x", "pidfile_owner": "nobody"})


def test_models_are_frozen() -> None:
    target = TargetConfig.model_validate({"name": "x", "pid": 1})
    with pytest.raises(ValidationError, match="frozen"):
        target.pid = 2
    assert target.pid == 1


def test_exe_narrowing_reaches_the_resolved_target_and_check_config(config_dir: Path) -> None:
    pattern = r'gunicorn.*app:main\s"q"'
    text = APP_EXE + (
        "cmdline = '" + pattern + '\'\nunit = "app.service"\ncgroup = "/system.slice/app.service"\n'
    )
    config = load_config(write(config_dir, text))
    (target,) = effective_targets(config)
    assert (target.cmdline, target.unit, target.cgroup) == (
        pattern,
        "app.service",
        "/system.slice/app.service",
    )
    rendered = render_effective(config).splitlines()
    at = rendered.index('exe = "/usr/bin/app"')
    assert rendered[at + 1 : at + 4] == [
        r'cmdline = "gunicorn.*app:main\\s\"q\""',
        'unit = "app.service"',
        'cgroup = "/system.slice/app.service"',
    ]
    assert roundtrip(config_dir, config) == config


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('cmdline = "gunicorn("', "not a valid regular expression: missing ), unterminated"),
        ('cmdline = "' + "a" * 257 + '"', "must be at most 256 characters (got 257)"),
        ('unit = "app"', "must be a systemd unit name ending in .service or .scope"),
        ('unit = "app.slice"', "must be a systemd unit name ending in .service or .scope"),
        ('unit = "a/b.service"', "must be a systemd unit name ending in .service or .scope"),
        ('cgroup = "system.slice"', "must be a cgroup path as /proc/PID/cgroup shows it"),
        ('cgroup = "/system.slice/"', "must be a cgroup path as /proc/PID/cgroup shows it"),
        ('cgroup = "/a/../b"', "must be a cgroup path as /proc/PID/cgroup shows it"),
    ],
)
def test_a_bad_narrowing_key_is_reported_at_its_key(
    config_dir: Path, line: str, reason: str
) -> None:
    ((key_path, got),) = problems_of(config_dir, APP_EXE + line + "\n")
    assert key_path == f'target[0] (name="app").{line.split(" ")[0]}'
    assert got.startswith(reason), got


def test_narrowing_keys_belong_to_exe_targets(config_dir: Path) -> None:
    text = APP + 'pid = 1\ncmdline = "x"\nunit = "a.service"\nthreshold = 0\n'
    assert problems_of(config_dir, text) == [
        ('target[0] (name="app").threshold', "must be between 1 and 99 (got 0)"),
        (
            'target[0] (name="app").cmdline',
            "applies only to an exe target (this target has no exe)",
        ),
        (
            'target[0] (name="app").unit',
            "applies only to an exe target (this target has no exe)",
        ),
    ]
    with pytest.raises(ValidationError, match="cgroup applies only to an exe target"):
        TargetConfig.model_validate({"name": "x", "pid": 1, "cgroup": "/a"})


# No deadline, as for the round trip above.
@settings(database=None, deadline=None)
@given(_raw_configs)
def test_a_resolved_target_is_the_one_its_values_validate_into(raw: dict[str, object]) -> None:
    """effective_targets validates each target's values and builds the target from them
    with a fields set every target shares: for any valid config that must be the very
    target the validating constructor makes of the same values (reload diffs by value)."""
    for resolved in effective_targets(Config.model_validate(raw)):
        validated = ResolvedTarget(**resolved.model_dump())
        assert resolved == validated
        assert hash(resolved) == hash(validated)
        assert [type(value) for _key, value in resolved] == [
            type(value) for _key, value in validated
        ]
        assert resolved.min_interval <= resolved.interval
        assert resolved.model_fields_set == set(ResolvedTarget.model_fields)


def test_resolved_targets_share_their_fields_set_and_a_copy_gets_its_own() -> None:
    """Every field of a resolved target is set, so all share one record of it (a set of
    the 18 names each was most of a target's size); model_copy adds to a copy of it."""
    config = Config.model_validate(
        {"target": [{"name": "a", "pid": 1}, {"name": "b", "exe": "/usr/bin/b"}]}
    )
    first, second = effective_targets(config)
    assert first.model_fields_set is second.model_fields_set
    assert first.model_fields_set == set(ResolvedTarget.model_fields)
    copy = first.model_copy(update={"threshold": 70})
    assert copy.model_fields_set is not first.model_fields_set
    assert copy != first and copy.threshold == 70
    assert first.threshold == 50


def _reachable(root: object) -> Iterator[object]:
    """Every object reachable from root through references, classes not followed (they
    lead to their modules, and from there to everything)."""
    seen = {id(root)}
    pending = [root]
    while pending:
        item = pending.pop()
        yield item
        for referent in gc.get_referents(item):
            if id(referent) not in seen and not isinstance(referent, type):
                seen.add(id(referent))
                pending.append(referent)


def test_the_running_config_keeps_the_targets_resolved_and_none_as_written(
    config_dir: Path,
) -> None:
    """What the daemon keeps for its whole run: [daemon] and [sinks.*] as loaded, and each
    target resolved, not also the TargetConfig it was resolved from."""
    text = (
        "[daemon]\nthreshold = 70\nwatchdog = false\n"
        '[sinks.stdout]\nformat = "ecs"\n' + APP_EXE + '[[target]]\nname = "b"\npid = 10\n'
    )
    config = load_config(write(config_dir, text))
    running = running_config(config)
    assert running.targets == effective_targets(config)
    assert [target.threshold for target in running.targets] == [70, 70]
    assert running.settings == Config(daemon=config.daemon, sinks=config.sinks)
    assert running.settings.targets == ()
    assert running.settings.sinks.stdout.format == "ecs"
    assert not running.settings.daemon.watchdog
    kept = list(_reachable(running))
    assert running.targets[0] in kept
    assert [item for item in kept if isinstance(item, TargetConfig)] == []


def test_a_reloaded_target_left_unchanged_is_the_running_one(config_dir: Path) -> None:
    """After a reload the daemon keeps each unchanged target once: the one its supervisor
    runs, not an equal copy from the file read again."""
    base = APP_EXE + '[[target]]\nname = "b"\npid = 10\n'
    first = running_config(load_config(write(config_dir, base)))
    changed = base.replace("pid = 10", "pid = 11") + '[[target]]\nname = "c"\npid = 12\n'
    second = running_config(load_config(write(config_dir, changed)), first.targets)
    assert second.targets == effective_targets(load_config(write(config_dir, changed)))
    assert second.targets[0] is first.targets[0]
    assert second.targets[1] is not first.targets[1] and second.targets[1].pid == 11
    assert second.targets[2].name == "c"
