"""The shipping recipes parse, agree with each other, and read journal fields memdoor really sends.

Alloy, Vector, Filebeat and Fluent Bit cannot be installed here, so each file is
parsed in its own syntax and its settings are checked for what the README says
they do. The journal side is real: memdoor's journald sink sends records to a
private journald, and they are read back the way the shippers read them
(journalctl with their arguments, and libsystemd's sd_journal).
"""

from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from memdoor.lab.private_journald import RealJournald, running_journald
from memdoor.procfs.cgroup_owner import parse_cgroup_owner
from memdoor.records import build_logger
from memdoor.render.bounded import snapshot_fields
from memdoor.render.owner import owner_dict
from memdoor.sinks.journal_fields import journal_fields
from memdoor.sinks.journald import JournaldSender
from memdoor.snapshot import take_snapshot
from tests.packaging.alloy_syntax import AlloySyntaxError, Block, Reference, parse_alloy

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "packaging" / "shipping"
ALLOY = RECIPES / "memdoor.alloy"
VECTOR = RECIPES / "vector.yaml"
FILEBEAT = RECIPES / "filebeat.yml"
FLUENT_BIT = RECIPES / "fluent-bit.yaml"
README = RECIPES / "README.md"
ELASTIC = REPO / "packaging" / "elastic"
LOKI_LABELS = {"job", "host", "unit", "target", "event", "watched_unit"}
# Fields journald adds to every entry itself (systemd.journal-fields(7)).
JOURNALD_TRUSTED = {"_HOSTNAME", "_SYSTEMD_UNIT"}
# Journal field names as they appear in the recipes: as is, as Alloy's internal
# labels (__journal_ + lower case), and under Filebeat's journald.custom.
_FIELD_SPELLINGS = (
    (re.compile(r"(?<![A-Za-z0-9])(_[A-Z][A-Z0-9_]*|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b"), str),
    (re.compile(r"\b(MESSAGE|PRIORITY)\b"), str),
    (re.compile(r"__journal_([a-z0-9_]+)"), str.upper),
    (re.compile(r"journald\.custom\.([a-z0-9_]+)"), str.upper),
)
# Alloy component exports the recipe may reference.
ALLOY_EXPORTS = {
    "loki.relabel": {"receiver", "rules"},
    "loki.process": {"receiver"},
    "loki.write": {"receiver"},
}


class _Collect:
    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    def emit(self, line: str, record: dict[str, Any]) -> None:
        self.emitted.append((line, record))


# Rootless Podman: a container in a user's manager, so unit, user unit and container are all set.
ROOTLESS_PODMAN = (
    "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + "3f" * 32 + ".scope"
)


def snapshot_record(pid: int, detail: str, owned: bool = False) -> tuple[str, dict[str, Any]]:
    """A real threshold_crossed record of pid; owned: with every optional journal field set."""
    owner = owner_dict(parse_cgroup_owner(ROOTLESS_PODMAN), "0123456789abcdef" * 2)
    sink = _Collect()
    build_logger(sink).warning(
        "threshold_crossed",
        target="shipping-test",
        pid=pid,
        message="shipping test",
        threshold_percent=1,
        threshold_base="system",
        **snapshot_fields(take_snapshot(pid), detail),
        **({"owner": owner} if owned else {}),
    )
    (emitted,) = sink.emitted
    return emitted


def field_names(text: str) -> set[str]:
    names: set[str] = set()
    for pattern, spell in _FIELD_SPELLINGS:
        names |= {spell(name) for name in pattern.findall(text)}
    return names


def load_yaml(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def template_pattern(name: str) -> str:
    (pattern,) = json.loads((ELASTIC / name).read_text())["index_patterns"]
    return str(pattern)


@pytest.fixture(scope="module")
def memdoor_fields() -> set[str]:
    line, record = snapshot_record(os.getpid(), "summary", owned=True)
    return set(journal_fields(record, line))


def test_the_yaml_recipes_parse() -> None:
    for path in (VECTOR, FILEBEAT, FLUENT_BIT):
        assert isinstance(load_yaml(path), dict), path


def test_the_alloy_recipe_parses_and_its_references_resolve() -> None:
    root = parse_alloy(ALLOY.read_text())
    defined = {f"{b.name}.{b.label}" for b in root.blocks}
    references: list[Reference] = []

    def collect(value: Any) -> None:
        if isinstance(value, Reference):
            references.append(value)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    for block in root.blocks:
        for value in block.attributes.values():
            collect(value)
    assert references
    for reference in references:
        component, export = reference.path.rsplit(".", 1)
        assert component in defined, reference
        kind = component.rsplit(".", 1)[0]
        assert export in ALLOY_EXPORTS[kind], reference


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('loki.write "a" {\n  endpoint {\n    url = "x"\n  }\n', "expected }"),
        ('loki.write "a" {\n  forward_to = [\n    b.c.receiver\n  ]\n}\n', "comma needed"),
        ('loki.write "a" {\n  url: "x"\n}\n', "unexpected ': "),
        ('loki.write "a" {\n  a = 1 b = 2\n}\n', "one statement per line"),
        ('loki.write "a" {\n  url = "x\n}\n', "unexpected"),
    ],
)
def test_the_alloy_reader_rejects_what_alloy_rejects(text: str, error: str) -> None:
    with pytest.raises(AlloySyntaxError, match=error):
        parse_alloy(text)


@pytest.mark.parametrize("recipe", [ALLOY, VECTOR, FILEBEAT, FLUENT_BIT], ids=lambda p: p.name)
def test_every_journal_field_a_recipe_reads_is_one_memdoor_sends(
    recipe: Path, memdoor_fields: set[str]
) -> None:
    names = field_names(recipe.read_text())
    assert {"SYSLOG_IDENTIFIER", "MEMDOOR_RECORD"} <= names
    assert names <= memdoor_fields | JOURNALD_TRUSTED, names - memdoor_fields


def test_a_field_memdoor_does_not_send_is_caught(memdoor_fields: set[str]) -> None:
    text = ALLOY.read_text().replace("__journal_memdoor_target", "__journal_memdoor_targets")
    assert field_names(text) - memdoor_fields - JOURNALD_TRUSTED == {"MEMDOOR_TARGETS"}


def alloy_labels(root: Block) -> set[str]:
    relabel = root.block("loki.relabel", "memdoor")
    rules = [rule.attributes for rule in relabel.blocks if rule.name == "rule"]
    return {str(rule["target_label"]) for rule in rules if "target_label" in rule}


def test_alloy_ships_the_record_as_the_line_with_the_agreed_labels() -> None:
    root = parse_alloy(ALLOY.read_text())
    source = root.block("loki.source.journal", "memdoor")
    assert source.attributes["matches"] == "SYSLOG_IDENTIFIER=memdoor"
    assert source.attributes["format_as_json"] is True
    assert alloy_labels(root) == LOKI_LABELS
    rules = [r.attributes for r in root.block("loki.relabel", "memdoor").blocks]
    # memdoor's stderr shares the identifier but has no MEMDOOR_EVENT: only records pass.
    assert rules[0] == {
        "source_labels": ["__journal_memdoor_event"],
        "regex": ".+",
        "action": "keep",
    }
    # A container's scope is no label: one stream per container would be too many.
    assert rules[-1] == {
        "source_labels": ["__journal_memdoor_container_id"],
        "regex": ".+",
        "target_label": "watched_unit",
        "replacement": "",
    }
    process = root.block("loki.process", "memdoor")
    extracted = process.block("stage.json").attributes["expressions"]
    assert isinstance(extracted, dict) and extracted["record"] == "MEMDOOR_RECORD"
    assert process.block("stage.output").attributes["source"] == "record"
    assert process.block("stage.structured_metadata").attributes["values"] == {"pid": ""}


def vrl_object_keys(source: str, variable: str) -> set[str]:
    match = re.search(rf"\.{variable} = compact\(\{{(.*?)\}}\)", source, re.DOTALL)
    assert match, variable
    return set(re.findall(r'"([a-z_]+)":', match.group(1)))


def test_vector_ships_the_record_as_the_line_and_the_document() -> None:
    config = load_yaml(VECTOR)
    components = {*config["sources"], *config["transforms"]}
    for name, component in {**config["transforms"], **config["sinks"]}.items():
        assert set(component["inputs"]) <= components, name
    assert config["sources"]["memdoor_journal"]["include_matches"] == {
        "SYSLOG_IDENTIFIER": ["memdoor"]
    }
    loki_source = config["transforms"]["memdoor_loki"]["source"]
    loki = config["sinks"]["loki"]
    assert loki["encoding"]["codec"] == "text"
    assert loki["labels"] == {"job": "memdoor", "*": "{{ loki_labels }}"}
    assert {"job"} | vrl_object_keys(loki_source, "loki_labels") == LOKI_LABELS
    assert (
        '"watched_unit": if exists(.MEMDOOR_CONTAINER_ID) { null } else { .MEMDOOR_UNIT }'
        in loki_source
    )
    assert loki["structured_metadata"] == {"*": "{{ loki_metadata }}"}
    assert vrl_object_keys(loki_source, "loki_metadata") == {"pid"}
    elasticsearch = config["sinks"]["elasticsearch"]
    assert elasticsearch["bulk"]["action"] == "create"


def test_filebeat_decodes_the_record_into_the_document() -> None:
    config = load_yaml(FILEBEAT)
    (journal,) = config["filebeat.inputs"]
    assert journal["type"] == "journald"
    assert journal["include_matches.match"] == ["SYSLOG_IDENTIFIER=memdoor"]
    processors = [next(iter(p.items())) for p in journal["processors"]]
    names = [name for name, _settings in processors]
    assert names.index("drop_fields") < names.index("decode_json_fields")
    decode = dict(processors)["decode_json_fields"]
    assert decode["fields"] == ["journald.custom.memdoor_record"]
    assert decode["target"] == "" and decode["overwrite_keys"] is True
    assert decode["max_depth"] == 1
    first_drop = next(settings for name, settings in processors if name == "drop_fields")["fields"]
    assert "process" in first_drop and "journald" not in first_drop
    assert config["setup.template.enabled"] is False


def comma_pairs(text: str) -> dict[str, str]:
    return dict(pair.strip().split("=", 1) for pair in text.split(","))


def test_fluent_bit_leaves_only_the_record_for_the_line() -> None:
    config = load_yaml(FLUENT_BIT)
    pipeline = config["pipeline"]
    filters = {(f["name"], f["match"]): f for f in pipeline["filters"]}
    outputs = {o["name"]: o for o in pipeline["outputs"]}
    for systemd in pipeline["inputs"]:
        assert systemd["systemd_filter"] == "SYSLOG_IDENTIFIER=memdoor"
    # A container's scope is no label: MEMDOOR_UNIT goes before the allow-list sees it.
    loki_filters = [f for f in pipeline["filters"] if f["match"] in ("memdoor.*", "memdoor.loki")]
    assert loki_filters[1] == {
        "name": "modify",
        "match": "memdoor.loki",
        "condition": "Key_exists MEMDOOR_CONTAINER_ID",
        "remove": "MEMDOOR_UNIT",
    }
    assert loki_filters[2]["name"] == "record_modifier"
    loki = outputs["loki"]
    labels = comma_pairs(loki["labels"])
    assert set(labels) == LOKI_LABELS
    metadata = comma_pairs(loki["structured_metadata"])
    assert set(metadata) == {"pid"}
    kept = set(filters[("record_modifier", loki["match"])]["allowlist_key"])
    removed = {key.strip() for key in loki["remove_keys"].split(",")}
    sources = {v.removeprefix("$") for v in [*labels.values(), *metadata.values()]}
    assert removed == sources - {"memdoor"}
    # drop_single_key makes the line the one key left: it must be the record.
    assert kept - removed == {"MEMDOOR_RECORD"}
    assert loki["drop_single_key"] == "raw"
    parser = filters[("parser", "memdoor.es")]
    (defined,) = config["parsers"]
    assert parser["parser"] == defined["name"] and defined["time_key"] == "timestamp"
    assert outputs["es"]["write_operation"] == "create"


def test_elasticsearch_recipes_write_where_the_memdoor_template_applies() -> None:
    vector = load_yaml(VECTOR)["sinks"]["elasticsearch"]["bulk"]["index"]
    filebeat = load_yaml(FILEBEAT)["output.elasticsearch"]["index"]
    fluent_bit = {o["name"]: o for o in load_yaml(FLUENT_BIT)["pipeline"]["outputs"]}["es"]
    memdoor = template_pattern("memdoor-index-template.json")
    ecs = template_pattern("memdoor-ecs-index-template.json")
    for index in (vector, filebeat, fluent_bit["index"]):
        assert fnmatch.fnmatchcase(index, memdoor) and not fnmatch.fnmatchcase(index, ecs), index


def test_the_readme_covers_every_recipe() -> None:
    text = README.read_text()
    for recipe in (ALLOY, VECTOR, FILEBEAT, FLUENT_BIT):
        assert f"`{recipe.name}`" in text, recipe.name
    assert 'event="oom_killed"' in text and 'event : "oom_killed"' in text


class _SdJournal:
    """libsystemd's reader, as Alloy and Fluent Bit use it: default data threshold."""

    def __init__(self) -> None:
        try:
            self.lib = ctypes.CDLL("libsystemd.so.0")
        except OSError as exc:
            pytest.skip(f"libsystemd.so.0 missing (Debian package libsystemd0): {exc}")

    def records(self, directory: Path) -> list[bytes]:
        handle = ctypes.c_void_p()
        assert (
            self.lib.sd_journal_open_directory(ctypes.byref(handle), os.fsencode(directory), 0) == 0
        )
        try:
            match = b"SYSLOG_IDENTIFIER=memdoor"
            assert self.lib.sd_journal_add_match(handle, match, len(match)) == 0
            found = []
            data, length = ctypes.c_void_p(), ctypes.c_size_t()
            prefix = b"MEMDOOR_RECORD="
            while self.lib.sd_journal_next(handle) > 0:
                self.lib.sd_journal_restart_data(handle)
                while self.lib.sd_journal_enumerate_data(
                    handle, ctypes.byref(data), ctypes.byref(length)
                ):
                    value = ctypes.string_at(data, length.value)
                    if value.startswith(prefix):
                        found.append(value[len(prefix) :])
            return found
        finally:
            self.lib.sd_journal_close(handle)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[RealJournald]:
    with running_journald(tmp_path) as real:
        yield real


def journalctl_records(journal: RealJournald, *args: str) -> list[Any]:
    result = journal.journalctl("SYSLOG_IDENTIFIER=memdoor", *args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line).get("MEMDOOR_RECORD") for line in result.stdout.splitlines()]


def test_how_each_reader_sees_a_large_record(journal: RealJournald, spawn_workload) -> None:
    """A detail="full" record of a few hundred KB, read the way each shipper reads it."""
    workload = spawn_workload("--mappings", "2000")
    small_line, small = snapshot_record(os.getpid(), "summary")
    large_line, large = snapshot_record(workload.pid, "full")
    assert len(small_line) < 4096 < 64 * 1024 < len(large_line.encode())
    with contextlib.closing(JournaldSender(journal.socket_path)) as sender:
        for line, record in ((small_line, small), (large_line, large)):
            assert sender.send(journal_fields(record, line)).status == "sent"
    # Vector: journalctl --all --output=json (plus --follow and a cursor).
    assert journalctl_records(journal, "--all", "--output=json") == [small_line, large_line]
    # Filebeat before elastic/beats#46017: no --all, so fields over 4096 bytes are null.
    assert journalctl_records(journal, "--utc", "--output=json") == [small_line, None]
    # Alloy and Fluent Bit: sd_journal_enumerate_data with the default 64 KiB threshold.
    stored = journal.run_dir / "log" / "journal"
    raw = _SdJournal().records(stored)
    assert [value.decode() for value in raw] == [small_line, large_line]
