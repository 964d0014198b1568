"""The fixture /proc trees, and a way to make files unreadable for a test.

tests/fixtures/proc/modern is one recorded machine: pid 7340 is a `sleep`
holding TCP and UDP sockets on 127.0.0.1 and ::1 (complete), 7341 the same
with its smaps cut short, 7342 the same with a malformed status; 7338 is its
parent and 1 is init. tests/fixtures/proc/old_kernel is that process as a
kernel before 4.14 shows it: no smaps_rollup, no RssAnon, older smaps fields,
no IPv6 tables. See tests/fixtures/proc_text/README.md for how they were made.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Callable, TypeVar

import pytest

from memdoor.collect import reading
from memdoor.collect.reading import Unreadable

PROC_TREES = Path(__file__).resolve().parent.parent / "fixtures" / "proc"
MODERN = str(PROC_TREES / "modern")
OLD_KERNEL = str(PROC_TREES / "old_kernel")

COMPLETE, TRUNCATED_SMAPS, MALFORMED_STATUS = 7340, 7341, 7342
PARENT = 7338
MISSING = 999999

Result = TypeVar("Result")

_READERS = ("read_bytes", "read_text", "read_link", "list_dir")


def deny(monkeypatch: pytest.MonkeyPatch, *denied_paths: str) -> None:
    """Make every memdoor reader answer "denied" for these paths, as EACCES would.

    Root cannot be refused a regular file, so the denial is simulated where it
    surfaces: in the reading helpers, patched in every memdoor module that
    imported them by name.
    """

    def refusing(original: Callable[[str], Result]) -> Callable[[str], object]:
        def read(path: str) -> object:
            if path in denied_paths:
                return Unreadable(path, "denied", "Permission denied")
            return original(path)

        return read

    read_links = reading.read_links

    def refusing_links(directory: str, names: Iterable[str]) -> object:
        names = list(names)
        if directory in denied_paths:
            return Unreadable(directory, "denied", "Permission denied")
        refused = [name for name in names if f"{directory}/{name}" in denied_paths]
        links = read_links(directory, [name for name in names if name not in refused])
        if isinstance(links, Unreadable):
            return links
        for name in refused:
            links.failures.append(Unreadable(f"{directory}/{name}", "denied", "Permission denied"))
        return links

    replacements = {getattr(reading, name): refusing(getattr(reading, name)) for name in _READERS}
    replacements[read_links] = refusing_links
    for module_name, module in list(sys.modules.items()):
        if module_name == "memdoor" or module_name.startswith("memdoor."):
            for name in (*_READERS, "read_links"):
                replacement = replacements.get(getattr(module, name, None))
                if replacement is not None:
                    monkeypatch.setattr(module, name, replacement)
