"""docs/records.md's table of events is the event table, row by row: the two cannot drift."""

from __future__ import annotations

from pathlib import Path

from memdoor.events import EVENTS

RECORDS_DOC = Path(__file__).resolve().parents[2] / "docs" / "records.md"
SECTION = "# Records"
TABLE_HEADER = ["| event | level | when |", "|---|---|---|"]


def documented_event_rows(text: str) -> list[tuple[str, str, str]]:
    """The (event, level, when) cells of the table after "Events:" in the Records section."""
    section = text.split(f"{SECTION}\n", 1)[1].split("\n## ", 1)[0]
    lines = section.split("\nEvents:\n\n", 1)[1].splitlines()
    assert lines[: len(TABLE_HEADER)] == TABLE_HEADER
    rows = []
    for line in lines[len(TABLE_HEADER) :]:
        if not line.startswith("|"):
            break
        event, level, when = (cell.strip() for cell in line.strip("|").split("|", 2))
        rows.append((event, level, when))
    return rows


def test_the_records_doc_lists_every_event_in_table_order_with_its_level_and_meaning() -> None:
    expected = [(f"`{event.value}`", spec.level, spec.meaning) for event, spec in EVENTS.items()]
    assert documented_event_rows(RECORDS_DOC.read_text(encoding="utf-8")) == expected


def test_the_parser_sees_a_drifted_row() -> None:
    text = RECORDS_DOC.read_text(encoding="utf-8")
    drifted = text.replace("| `snapshot` | warning |", "| `snapshot` | info |", 1)
    assert drifted != text
    assert documented_event_rows(drifted) != documented_event_rows(text)
