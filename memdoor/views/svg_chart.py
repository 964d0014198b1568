"""The trajectory before a kill as an inline SVG: RSS and the cgroup's usage over time,
the threshold and the limit as lines, the crossing and the kill marked.

Each series is one <polyline> with one coordinate pair per recorded figure (the
tests count them); every label is escaped, as every string from a record is.
"""

from __future__ import annotations

import html
import math
from typing import Optional

from memdoor.messages import human_kb
from memdoor.views.kills import KillStory, kernel_rss_kb
from memdoor.views.text import clock, printable

WIDTH, HEIGHT = 960, 380
LEFT, RIGHT, TOP, BOTTOM = 84, 150, 20, 44
TICKS = 5


def nice_step(raw_kb: float) -> float:
    """The smallest of 1, 2, 5 x 10^n KiB (MiB from 1 MiB up) at least raw_kb."""
    unit = 1024.0 if raw_kb >= 1024 else 1.0
    scaled = raw_kb / unit
    power = 10.0 ** math.floor(math.log10(max(scaled, 1e-9)))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= scaled) * unit


def escape(value: object) -> str:
    """Text from a record, safe between tags and inside quoted attributes."""
    return html.escape(printable(value), quote=True)


class SvgChart:
    def __init__(self, story: KillStory) -> None:
        self.story = story
        self.cgroup = [(p.at, p.cgroup_kb) for p in story.points if p.cgroup_kb is not None]
        self.rss = [(p.at, p.rss_kb) for p in story.points if p.rss_kb is not None]
        self.kill_rss = kernel_rss_kb(story.kill)
        times = [at for at, _kb in self.cgroup + self.rss] + [story.killed_at]
        if story.crossed_at is not None:
            times.append(story.crossed_at)
        self.start, self.end = min(times), max(times)
        self.thresholds = story.thresholds_kb()
        figures = [kb for _at, kb in self.cgroup + self.rss]
        lines = [story.limit_kb, self.kill_rss, *self.thresholds.values()]
        self.top = max([kb for kb in lines if kb is not None] + figures + [1.0]) * 1.05
        # A system threshold far above everything else would flatten the chart: noted, not drawn.
        limit = story.limit_kb
        if limit is not None and self.thresholds.get("system", 0.0) > 2 * max([*figures, limit]):
            del self.thresholds["system"]
            self.top = max([*figures, limit, self.kill_rss or 0.0, 1.0]) * 1.05

    def x(self, at: float) -> float:
        span = max(self.end - self.start, 1e-3)
        return LEFT + (at - self.start) / span * (WIDTH - LEFT - RIGHT)

    def y(self, kb: float) -> float:
        return TOP + (1 - kb / self.top) * (HEIGHT - TOP - BOTTOM)

    def _polyline(self, series: list[tuple[float, float]], css: str) -> str:
        points = " ".join(f"{self.x(at):.1f},{self.y(kb):.1f}" for at, kb in series)
        dots = "".join(
            f'<circle class="dot {css}" cx="{self.x(at):.1f}" cy="{self.y(kb):.1f}" r="2.5"/>'
            for at, kb in series
        )
        return f'<polyline class="series {css}" points="{points}"/>{dots}'

    def _level(self, kb: float, css: str, label: str) -> str:
        y = self.y(kb)
        return (
            f'<line class="{css}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="{css}-label" x="{WIDTH - RIGHT + 6}" y="{y + 4:.1f}">'
            f"{escape(label)}</text>"
        )

    def _moment(self, at: float, css: str, label: str, row: int) -> str:
        """A vertical line at `at`, its label inside the plot, on the side with room."""
        x = self.x(at)
        left_half = x < (LEFT + WIDTH - RIGHT) / 2
        label_x, anchor = (x + 6, "start") if left_half else (x - 6, "end")
        return (
            f'<line class="{css}" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>'
            f'<text class="{css}-label" x="{label_x:.1f}" y="{HEIGHT - BOTTOM - 10 - row * 16}" '
            f'text-anchor="{anchor}">{escape(label)}</text>'
        )

    def _axes(self) -> str:
        parts = [
            f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>',
            f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{HEIGHT - BOTTOM}" '
            f'y2="{HEIGHT - BOTTOM}"/>',
        ]
        step = nice_step(self.top / TICKS)
        for tick in range(int(self.top // step) + 1):
            kb = tick * step
            y = self.y(kb)
            parts.append(
                f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
                f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                f"{human_kb(int(kb))}</text>"
            )
        for tick in range(TICKS + 1):
            at = self.start + (self.end - self.start) * tick / TICKS
            anchor = "start" if tick == 0 else "end" if tick == TICKS else "middle"
            parts.append(
                f'<text class="tick" x="{self.x(at):.1f}" y="{HEIGHT - BOTTOM + 18}" '
                f'text-anchor="{anchor}">{clock(at)}</text>'
            )
        return "".join(parts)

    def svg(self) -> str:
        story = self.story
        body = [self._axes()]
        if story.limit_kb is not None:
            body.append(
                self._level(story.limit_kb, "limit", f"limit {human_kb(int(story.limit_kb))}")
            )
        for base, kb in self.thresholds.items():
            percent = f"{story.threshold_percent or 0:g}%"
            body.append(self._level(kb, "threshold", f"threshold {percent} ({base})"))
        if story.crossed_at is not None:
            body.append(
                self._moment(story.crossed_at, "crossing", f"crossed {clock(story.crossed_at)}", 0)
            )
        body.append(self._moment(story.killed_at, "kill", f"OOM kill {clock(story.killed_at)}", 1))
        if self.cgroup:
            body.append(self._polyline(self.cgroup, "cgroup"))
        if self.rss:
            body.append(self._polyline(self.rss, "rss"))
        if self.kill_rss is not None:
            body.append(
                f'<circle class="kill-rss" cx="{self.x(story.killed_at):.1f}" '
                f'cy="{self.y(self.kill_rss):.1f}" r="5"><title>RSS at the kill (kernel log): '
                f"{human_kb(int(self.kill_rss))}</title></circle>"
            )
        return (
            '<svg id="trajectory" xmlns="http://www.w3.org/2000/svg" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            'aria-label="memory before the kill">' + "".join(body) + "</svg>"
        )


def trajectory_svg(story: KillStory) -> Optional[str]:
    """The chart, or None when no figure was recorded before the kill."""
    if not story.points:
        return None
    return SvgChart(story).svg()
