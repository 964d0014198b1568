"""Every relative link in README.md and docs/ leads somewhere: the file exists and the anchor
is one of its headings as GitHub names them. A section moved to another page without its
links, or a heading renamed under them, fails here; so does a docs page README forgets."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# [text](target) and ![alt](target); the target has no spaces (none of ours has a title).
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"`+[^`]*`+")
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def documents() -> list[Path]:
    """The pages a reader follows links through: README.md and everything under docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, where Markdown makes links and headings."""
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lower-cased, punctuation dropped, spaces
    to hyphens (letters, digits, `_` and `-` kept)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor, a repeated one numbered as GitHub numbers it (-1, -2, ...)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose_lines(text):
        match = _HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[str]:
    """The relative link targets in prose, code spans left out (`[x](y)` there is text)."""
    targets: list[str] = []
    for line in prose_lines(text):
        for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
            target = match.group(1)
            if not _SCHEME.match(target):
                targets.append(target)
    return targets


def broken_links(pages: dict[Path, str]) -> list[str]:
    """Each link in `pages` whose file or anchor does not exist; pages not given are read."""

    def text_of(path: Path) -> str:
        return pages[path] if path in pages else path.read_text(encoding="utf-8")

    broken: list[str] = []
    for page, text in pages.items():
        for target in links(text):
            file_part, _, anchor = target.partition("#")
            destination = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(REPO)}: {target}"
            if destination not in pages and not destination.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and (
                destination.suffix != ".md" or anchor not in anchors(text_of(destination))
            ):
                broken.append(f"{where} (no such heading)")
    return broken


def current_pages() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in documents()}


def test_every_relative_link_and_anchor_resolves() -> None:
    assert broken_links(current_pages()) == []


def test_readme_links_every_docs_page() -> None:
    readme = REPO / "README.md"
    linked = {
        (readme.parent / target.partition("#")[0]).resolve() for target in links(readme.read_text())
    }
    assert [page for page in documents()[1:] if page not in linked] == []


def test_github_slugs() -> None:
    assert slug("Shipping records: ELK, Loki, syslog, journal-remote") == (
        "shipping-records-elk-loki-syslog-journal-remote"
    )
    assert slug("Install and see it work (Debian)") == "install-and-see-it-work-debian"
    assert slug("`memdoor show` and [the journal](x.md)") == "memdoor-show-and-the-journal"
    assert slug("systemd-oomd") == "systemd-oomd"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n## A\n") == {"a", "a-1", "a-2"}


def test_a_moved_section_or_a_renamed_heading_breaks_its_links() -> None:
    pages = current_pages()
    runtime, configuration = REPO / "docs" / "runtime.md", REPO / "docs" / "configuration.md"
    assert "](configuration.md#pidfiles)" in pages[runtime]
    renamed = dict(pages)
    renamed[configuration] = pages[configuration].replace("\n## Pidfiles\n", "\n## Pid files\n")
    assert renamed[configuration] != pages[configuration]
    assert broken_links(renamed) == ["docs/runtime.md: configuration.md#pidfiles (no such heading)"]
    moved = dict(pages)
    moved[runtime] = pages[runtime].replace("](configuration.md#", "](config.md#")
    assert broken_links(moved) == ["docs/runtime.md: config.md#pidfiles (no such file)"]


def test_links_in_code_are_not_links() -> None:
    text = "`[a](missing.md)`\n```\n[b](missing.md)\n```\n[c](https://example.org/x#y)\n"
    assert links(text) == []
