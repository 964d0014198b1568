"""The HTML post-mortem: hostile text stays text, and a real headless Chromium draws it.

Chromium is Debian's `chromium` (tests/run.sh installs it); it runs with no
network use of its own, a fresh profile, and prints the DOM it rendered. The
screenshot is kept under $MEMDOOR_TEST_ARTIFACTS (default: the test's tmp dir).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Optional

import pytest

from memdoor.events import Event
from memdoor.views.html_page import html_page
from memdoor.views.kills import find_kills
from memdoor.views.mapping_groups import group_rows
from memdoor.views.postmortem import TOP_GROUPS
from tests.views.conftest import run_show

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>&amp;\x1b[31m\u202e'
WINDOW = (1280, 1600)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Elements(HTMLParser):
    """Every element's tag and attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, Optional[str]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, Optional[str]]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def having(self, tag: str, css: Optional[str] = None) -> list[dict[str, Optional[str]]]:
        return [
            attrs
            for name, attrs in self.elements
            if name == tag and (css is None or css in (attrs.get("class") or "").split())
        ]


def parsed(page: str) -> Elements:
    elements = Elements()
    elements.feed(page)
    elements.close()
    return elements


def hostile_run(daemon_run: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The real run with the victim's name, a mapped file and its cgroup path made hostile."""
    records = copy.deepcopy(daemon_run)
    for record in records:
        if record["event"] == Event.OOM_KILLED:
            record["kill"]["name"] = HOSTILE
            last = record["last_snapshot"]
            last["process"]["name"] = HOSTILE
            last["process"]["cmdline"] = [HOSTILE]
            last["cgroup"]["path"] = HOSTILE
            last["mappings_summary"]["groups"][0]["name"] = HOSTILE
            last["tree"][0]["name"] = HOSTILE
    return records


def test_hostile_text_is_escaped_everywhere(daemon_run: list[dict[str, Any]]) -> None:
    stories = find_kills(hostile_run(daemon_run))
    page = html_page(stories[-1], stories)
    assert "<script" not in page and "<img" not in page and "\x1b" not in page
    assert "\u202e" not in page
    elements = parsed(page)
    assert not elements.having("script") and not elements.having("img")
    assert all(not any(k.startswith("on") for k in attrs) for _t, attrs in elements.elements)
    text = "".join(elements.text)
    assert text.count("<script>alert(1)</script>") >= 5, "shown as text, as the record has it"
    assert "\\x1b[31m" in text and "\\u202e" in text


def test_the_page_fetches_nothing(daemon_run: list[dict[str, Any]]) -> None:
    stories = find_kills(daemon_run)
    page = html_page(stories[-1], stories)
    for _tag, attrs in parsed(page).elements:
        for name in ("src", "href", "action", "data"):
            assert name not in attrs, attrs
    assert "url(" not in page and "@import" not in page
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium is missing (Debian package: chromium; tests/run.sh installs it)")
    return found


def artifacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("MEMDOOR_TEST_ARTIFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def headless(page: Path, profile: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_chromium_renders_the_post_mortem(
    records_file: Path, daemon_run: list[dict[str, Any]], tmp_path: Path
) -> None:
    chromium()
    page = tmp_path / "postmortem.html"
    written = run_show([str(records_file), "--html", str(page)])
    assert (written.returncode, written.stdout, written.stderr) == (0, "", "")
    story = find_kills(daemon_run)[-1]

    dom = headless(page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    rendered = parsed(dom.stdout)
    (svg,) = rendered.having("svg")
    assert svg["id"] == "trajectory"
    (cgroup_line,) = rendered.having("polyline", "cgroup")
    (rss_line,) = rendered.having("polyline", "rss")
    cgroup_points = [p for p in story.points if p.cgroup_kb is not None]
    rss_points = [p for p in story.points if p.rss_kb is not None]
    assert len((cgroup_line["points"] or "").split()) == len(cgroup_points) >= 5
    assert len((rss_line["points"] or "").split()) == len(rss_points) >= 1
    assert len(rendered.having("line", "kill")) == 1, "the kill is marked"
    assert len(rendered.having("line", "crossing")) == 1, "the crossing is marked"
    assert len(rendered.having("line", "limit")) == 1 and rendered.having("line", "threshold")
    text = "".join(rendered.text)
    assert "OOM kill " in text and "limit 256.0 MiB" in text
    rows = group_rows(story.last_snapshot, story.earlier_full, TOP_GROUPS)
    table = dom.stdout[dom.stdout.index('<table id="mappings">') :]
    table = table[: table.index("</table>")]
    assert table.count("<tr>") == len(rows) + 1 == TOP_GROUPS + 1
    assert "[anonymous]" in table.split("<tr>")[2], "the largest group comes first"
    assert len(parsed(table).having("span", "growth")) == len(rows)

    screenshot = artifacts(tmp_path) / "postmortem.png"
    shot = headless(
        page,
        tmp_path / "profile-shot",
        f"--screenshot={screenshot}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    )
    assert shot.returncode == 0, shot.stderr
    data = screenshot.read_bytes()
    assert len(data) > 10_000, "a page with a chart and tables, not a blank one"
    assert png_size(data) == WINDOW
