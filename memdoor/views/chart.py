"""The memory trajectory before a kill as a text chart that reads at 80 columns.

Columns are equal slices of time from the first figure to the kill; each shows
the largest figure measured in it (a slice without one repeats the one before).
The figure the limit applies to (the cgroup's usage, or RSS without a limit)
is drawn as bars in eighths of a row, RSS as dots over them, the limit and the
threshold as lines; the crossing and the kill are marked under the time axis.
With ascii=True only ASCII is used, for terminals whose encoding is not UTF-8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from memdoor.messages import human_kb
from memdoor.views.kills import KillStory
from memdoor.views.text import clock, duration

WIDTH = 64
HEIGHT = 10
LABEL_WIDTH = 10


@dataclass(frozen=True)
class Glyphs:
    eighths: str  # index 1..8: a cell filled that many eighths from the bottom
    dot: str
    limit: str
    threshold: str
    axis: str
    corner: str
    tick: str
    floor: str
    crossed: str
    killed: str


UNICODE = Glyphs(" ▁▂▃▄▅▆▇█", "•", "━", "┈", "│", "└", "┤", "─", "▲", "✕")
# ASCII has no eighths: a cell is full from half a row up.
ASCII = Glyphs("    #####", "o", "=", "-", "|", "+", "+", "-", "^", "X")


def _columns(
    points: list[tuple[float, float]], start: float, end: float, carry: bool
) -> list[Optional[float]]:
    """The largest figure in each time slice; carried forward over empty slices if asked."""
    span = max(end - start, 1e-3)
    found: list[Optional[float]] = [None] * WIDTH
    for at, kb in points:
        column = min(WIDTH - 1, max(0, int((at - start) / span * WIDTH)))
        previous = found[column]
        found[column] = kb if previous is None else max(previous, kb)
    if carry:
        for column in range(1, WIDTH):
            if found[column] is None:
                found[column] = found[column - 1]
    return found


def _column_of(at: float, start: float, end: float) -> int:
    span = max(end - start, 1e-3)
    return min(WIDTH - 1, max(0, int((at - start) / span * WIDTH)))


class TextChart:
    def __init__(self, story: KillStory, glyphs: Glyphs) -> None:
        self.story = story
        self.g = glyphs
        by_limit = story.limit_kb is not None
        self.bar_name = "cgroup usage" if by_limit else "RSS"
        bars = story.measured()
        dots = [(p.at, p.rss_kb) for p in story.points if p.rss_kb is not None and by_limit]
        self.has_dots = bool(dots)
        everything = [at for at, _kb in bars + dots]
        self.start = min(everything) if everything else story.killed_at
        self.end = story.killed_at
        self.bars = _columns(bars, self.start, self.end, carry=True)
        self.dots = _columns(dots, self.start, self.end, carry=False)
        thresholds = story.thresholds_kb()
        self.threshold = thresholds.get("cgroup" if by_limit else "system")
        lines = [kb for kb in (story.limit_kb, self.threshold) if kb is not None]
        figures = [kb for kb in self.bars + self.dots if kb is not None]
        self.top = max(lines + figures + [1.0])

    def _eighths(self, kb: float) -> int:
        return round(kb / self.top * HEIGHT * 8)

    def _row_of(self, kb: float) -> int:
        """The row (0 at the bottom) whose top edge is nearest kb."""
        return max(0, min(HEIGHT - 1, round(kb / self.top * HEIGHT) - 1))

    def _cell(self, row: int, column: int, line: str) -> str:
        bar, dot = self.bars[column], self.dots[column]
        if dot is not None and self._row_of(dot) == row and self._eighths(dot) > 0:
            return self.g.dot
        if bar is not None:
            filled = self._eighths(bar) - row * 8
            if filled > 0:
                return self.g.eighths[min(filled, 8)]
        return line

    def _row(self, row: int) -> str:
        line, label = " ", ""
        if self.threshold is not None and self._row_of(self.threshold) == row:
            line, label = self.g.threshold, human_kb(int(self.threshold))
        if self.story.limit_kb is not None and self._row_of(self.story.limit_kb) == row:
            line, label = self.g.limit, human_kb(int(self.story.limit_kb))
        cells = "".join(self._cell(row, column, line) for column in range(WIDTH))
        axis = self.g.tick if label else self.g.axis
        return f"{label:>{LABEL_WIDTH}}{axis}{cells}"

    def _marks(self) -> str:
        marks = [" "] * WIDTH
        if self.story.crossed_at is not None and self.start <= self.story.crossed_at <= self.end:
            marks[_column_of(self.story.crossed_at, self.start, self.end)] = self.g.crossed
        marks[WIDTH - 1] = self.g.killed
        return " " * (LABEL_WIDTH + 1) + "".join(marks).rstrip()

    def _legend(self) -> list[str]:
        g, story = self.g, self.story
        first = f"{g.eighths[8]} {self.bar_name}"
        if self.has_dots:
            first += f"   {g.dot} RSS"
        if story.limit_kb is not None:
            first += f"   {g.limit * 2} limit {human_kb(int(story.limit_kb))}"
        if self.threshold is not None:
            first += f"   {g.threshold * 2} threshold {story.threshold_percent:g}%"
        second = f"{g.crossed} crossed {clock(story.crossed_at)}   " if story.crossed_at else ""
        second += f"{g.killed} killed {clock(self.end)}"
        return [" " * (LABEL_WIDTH + 1) + first, " " * (LABEL_WIDTH + 1) + second]

    def lines(self) -> list[str]:
        rows = [self._row(row) for row in reversed(range(HEIGHT))]
        span = duration(max(0.0, self.end - self.start))
        left, right = clock(self.start), f"{span} later"
        axis = f"{'0':>{LABEL_WIDTH}}{self.g.corner}{self.g.floor * WIDTH}"
        times = " " * (LABEL_WIDTH + 1) + left + right.rjust(WIDTH - len(left))
        return [*rows, axis, self._marks(), times, *self._legend()]


def text_chart(story: KillStory, ascii_only: bool) -> list[str]:
    """The chart's lines, at most 75 columns wide; no line when there is nothing to draw."""
    if not story.measured():
        return []
    return TextChart(story, ASCII if ascii_only else UNICODE).lines()
