from __future__ import annotations

from pathlib import Path

from memdoor.collect.oom import OomScores, read_oom_scores
from memdoor.collect.reading import Unreadable
from tests.collect.trees import COMPLETE, MISSING, MODERN
from tests.workload_fixture import SpawnWorkload


def test_recorded_scores() -> None:
    problems: list[Unreadable] = []
    # Recorded after writing 300 to oom_score_adj, which raised the score.
    assert read_oom_scores(COMPLETE, problems, MODERN) == OomScores(score=866, score_adj=300)
    assert problems == []


def test_malformed_and_missing(tmp_path: Path) -> None:
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "oom_score").write_text("high\n")
    problems: list[Unreadable] = []
    assert read_oom_scores(5, problems, str(tmp_path)) == OomScores(None, None)
    assert [(p.what, p.reason) for p in problems] == [
        (f"{tmp_path}/5/oom_score", "malformed"),
        (f"{tmp_path}/5/oom_score_adj", "vanished"),
    ]


def test_vanished_process() -> None:
    problems: list[Unreadable] = []
    assert read_oom_scores(MISSING, problems, MODERN) == OomScores(None, None)
    assert [p.reason for p in problems] == ["vanished", "vanished"]


def test_real_process(spawn_workload: SpawnWorkload) -> None:
    workload = spawn_workload()
    # Raising needs no capability; lowering needs CAP_SYS_RESOURCE, which a
    # container's root may lack.
    Path(f"/proc/{workload.pid}/oom_score_adj").write_text("123\n")
    problems: list[Unreadable] = []
    scores = read_oom_scores(workload.pid, problems)
    assert problems == []
    assert scores.score_adj == 123
    assert scores.score == int(Path(f"/proc/{workload.pid}/oom_score").read_text())
