"""The code keeps the shape the Layout in docs/internals.md promises.

Every module is listed there; each imports only from what the list puts below
it (data flows one way: parsers, collectors, the snapshot, the watcher, the
daemon, records and sinks, the CLI on top); an event's name is written in the
event table alone; no class outgrows a screenful of screens.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Optional

from memdoor.events import Event

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "memdoor"
LAYOUT = REPO / "docs" / "internals.md"
MAX_CLASS_LINES = 200


def layout_lines() -> list[str]:
    text = LAYOUT.read_text()
    block = text.split("# Layout\n", 1)[1].split("```\n", 2)[1]
    return [line for line in block.splitlines() if line.strip()]


def listed() -> tuple[list[str], set[str]]:
    """(top-level entries in order, every file listed) as module-ish paths under memdoor/."""
    order: list[str] = []
    files: set[str] = set()
    package = ""
    for line in layout_lines():
        name = line.split()[0]
        if not line.startswith(" "):
            if not name.startswith("memdoor/"):
                package = ""
                continue
            order.append(name.rstrip("/"))
            package = name if name.endswith("/") else ""
            if not package:
                files.add(name)
        elif package:
            files.add(package + name)
    return order, files


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py")


def rank(module_path: str, order: list[str]) -> Optional[int]:
    for index, entry in enumerate(order):
        if (
            module_path == entry
            or module_path.startswith(entry + "/")
            or (module_path == entry.removesuffix(".py"))
        ):
            return index
    return None


def test_every_module_is_listed() -> None:
    order, files = listed()
    for path in modules():
        relative = str(path.relative_to(REPO))
        in_listed_package = any(
            relative.startswith(entry + "/") and not any(f.startswith(entry + "/") for f in files)
            for entry in order
        )
        assert relative in files or in_listed_package, (
            f"the Layout ({LAYOUT.name}) does not list {relative}"
        )


def test_every_listed_file_exists() -> None:
    _order, files = listed()
    for name in files:
        assert (REPO / name).exists(), (
            f"the Layout ({LAYOUT.name}) lists {name}, which does not exist"
        )


def imported_modules(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("memdoor"):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("memdoor")]
    return found


def test_imports_flow_down_the_layout() -> None:
    order, _files = listed()
    upward = []
    for path in modules():
        own = rank(str(path.relative_to(REPO)), order)
        for module in imported_modules(path):
            target = module.replace(".", "/")
            other = rank(target + ".py", order)
            if other is None:
                other = rank(target, order)
            if own is not None and other is not None and other < own:
                upward.append(f"{path.relative_to(REPO)} imports {module}")
    assert upward == []


def test_event_names_are_written_in_the_event_table_only() -> None:
    names = {event.value for event in Event}
    elsewhere = []
    for path in modules():
        if path == PACKAGE / "events.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                elsewhere.append(f"{path.relative_to(REPO)}:{node.lineno} {node.value!r}")
    assert elsewhere == []


def test_no_class_outgrows_its_room() -> None:
    large = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    large.append(f"{path.relative_to(REPO)}: {node.name} has {lines} lines")
    assert large == []


def test_the_layout_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The rank rule itself: a parser importing the daemon would be caught."""
    order, _files = listed()
    parser, daemon = rank("memdoor/procfs/stat.py", order), rank("memdoor/daemon.py", order)
    assert parser is not None and daemon is not None and daemon < parser
    assert re.fullmatch(r"memdoor/.*", order[0])
