"""The kernel's own ranking of who dies first: oom_score and oom_score_adj."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from memdoor.collect.reading import Unreadable, malformed, read_text
from memdoor.vocabulary import decimal


@dataclass(frozen=True)
class OomScores:
    score: Optional[int]
    score_adj: Optional[int]


def _read_int(path: str, problems: list[Unreadable]) -> Optional[int]:
    text = read_text(path)
    if isinstance(text, Unreadable):
        problems.append(text)
        return None
    stripped = text.strip()
    # oom_score_adj is signed (-1000..1000).
    value = decimal(stripped.removeprefix("-")) if stripped else None
    if value is None:
        problems.append(malformed(path, f"expected an integer, got {text[:40]!r}"))
        return None
    return -value if stripped.startswith("-") else value


def read_oom_scores(pid: int, problems: list[Unreadable], proc: str = "/proc") -> OomScores:
    return OomScores(
        score=_read_int(f"{proc}/{pid}/oom_score", problems),
        score_adj=_read_int(f"{proc}/{pid}/oom_score_adj", problems),
    )
