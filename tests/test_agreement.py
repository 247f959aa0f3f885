"""Grader meta-evaluation (`qednano.grading.agreement`) and `qednano rubrics` / `qednano grade` end to end."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from qednano.cli import main
from qednano.config import ConfigError
from qednano.grading.agreement import HumanGradedFile, advantage_error, agreement, agreement_table, kendall_tau
from qednano.grading.judge import ProofJudge
from qednano.records import Attempt, Grade
from qednano.testing.fake_server import FakeServer

# Hand-computed example (QED-Nano appendix A). Problem A: human 7,3,0 (mean 10/3), judge 6,4,0 (mean 10/3):
# advantages 11/3,-1/3,-10/3 vs 8/3,2/3,-10/3 -> |diff| 1,1,0. Problem B: human 2,2 (adv 0,0), judge 5,3
# (mean 4, adv 1,-1) -> |diff| 1,1. Problem C has one solution: left out. Error = (1+1+0+1+1)/5 = 0.8.
ROWS = [
    ("A", "A/0", 6, 7),
    ("A", "A/1", 4, 3),
    ("A", "A/2", 0, 0),
    ("A", "A/3", None, 7),  # ungraded: out of every metric but the ungraded rate
    ("B", "B/0", 5, 2),
    ("B", "B/1", 3, 2),
    ("C", "C/0", 0, 5),
]


def records(rows: list[tuple[str, str, float | None, float]], judge: str = "j") -> tuple[list[Attempt], list[Grade]]:
    attempts = [
        Attempt(id=a, problem_id=p, sample=int(a[-1]), scaffold="x", proof="...", human_points=h) for p, a, _, h in rows
    ]
    grades = [
        Grade(attempt_id=a, problem_id=p, judge=judge, points=j, metadata={"style": "proofbench_strict"})
        for p, a, j, _ in rows
    ]
    return attempts, grades


def test_advantage_error_matches_the_hand_computed_example() -> None:
    scored = [(p, a, float(j), float(h)) for p, a, j, h in ROWS if j is not None]
    assert advantage_error(scored) == pytest.approx(0.8)


def test_all_metrics_on_the_example() -> None:
    [r] = agreement(*records(ROWS))
    # diffs judge - human over the 6 scored rows: -1, +1, 0, +3, +1, -5
    assert (r.judge, r.style, r.n, r.graded) == ("j", "proofbench_strict", 6, 7)
    assert r.ungraded_rate == pytest.approx(1 / 7)
    assert r.advantage_error == pytest.approx(0.8)
    assert r.mae == pytest.approx(11 / 6)
    assert r.rmse == pytest.approx(math.sqrt(37 / 6))
    assert r.within_one == pytest.approx(4 / 6)
    assert r.exact == pytest.approx(1 / 6)
    assert r.bias == pytest.approx(-1 / 6)
    # (6,7),(4,3),(0,0),(5,2),(3,2),(0,5), 15 pairs: 9 concordant, 4 discordant, 1 tied in the judge only
    # ((0,0)-(0,5)), 1 tied in the human only ((5,2)-(3,2)): tau-b = 5 / sqrt(14 * 14)
    assert r.kendall_tau == pytest.approx(5 / 14)


def test_a_constant_shift_costs_nothing_in_advantage_error() -> None:
    shifted = [(p, a, None if j is None else h + 2, h) for p, a, j, h in ROWS]
    [r] = agreement(*records(shifted))
    assert r.advantage_error == pytest.approx(0.0) and r.mae == pytest.approx(2.0) and r.bias == pytest.approx(2.0)
    assert r.kendall_tau == pytest.approx(1.0)


def test_kendall_tau_small_cases_and_scipy() -> None:
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    stats = pytest.importorskip("scipy.stats", reason="the reference Kendall tau comes from scipy (the dev extra)")
    x, y = [6, 4, 0, 5, 3, 0, 7, 7, 1], [7, 3, 0, 2, 2, 5, 7, 6, 0]
    assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_judges_are_compared_side_by_side() -> None:
    attempts, strict = records(ROWS, "proof-proofbench_strict-aaaaaa")
    _, simple = records([(p, a, h, h) for p, a, _, h in ROWS], "proof-simple-bbbbbb")
    results = agreement(attempts, strict + simple + [Grade(attempt_id="zz/0", problem_id="zz", judge="x", points=1)])
    assert [r.judge for r in results] == ["proof-proofbench_strict-aaaaaa", "proof-simple-bbbbbb"]
    assert results[1].mae == 0 and results[1].ungraded_rate == 0
    table = agreement_table(results)
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[0].count("|") == 13
    assert "| proof-proofbench_strict-aaaaaa | proofbench_strict | 6 | 0.800 |" in table
    assert "| 0.000 | 0.000 | 0.000 | 100.0% | 100.0% | 1.000 | 0.00 | 0.0% | 0 |" in table


def graded_rows() -> list[dict[str, Any]]:
    problems = [
        {"id": "p1", "statement": "Prove that $1+1=2$.", "solution": "Peano."},
        {"id": "p2", "statement": "Prove that there are infinitely many primes.", "solution": "Euclid."},
    ]
    rows = []
    for problem in problems:
        for steps, human in ((7, 7.0), (3, 2.0), (0, 0.0)):
            rows.append({"problem": problem, "proof": f"A proof in {steps} steps.", "human_points": human})
    return rows


def test_human_graded_file(tmp_path: Path) -> None:
    path = tmp_path / "graded.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in graded_rows()))
    problems, attempts = HumanGradedFile(path=str(path)).read()
    assert [p.id for p in problems] == ["p1", "p2"]
    assert [a.id for a in attempts][:3] == ["p1/0", "p1/1", "p1/2"]
    assert [a.human_points for a in attempts][:3] == [7.0, 2.0, 0.0]
    bad = graded_rows()
    bad[1]["problem"] = {**bad[1]["problem"], "statement": "changed"}
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(ConfigError, match="row 2: problem 'p1' differs"):
        HumanGradedFile(path=str(path)).read()
    bad = graded_rows()
    bad[0]["human_points"] = 9
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises(ConfigError, match="above max_points"):
        HumanGradedFile(path=str(path)).read()


GOOD_RUBRIC = """## Checkpoints (7 pts total)
1. [3 pts] Key idea: the invariant.
2. [4 pts] Completion: finishes the argument.
Total (max 7)

## Zero-credit items
- Restating the problem.

## Deductions
- -1: small slip.
"""


def judge_script(body: dict[str, Any]) -> str:
    prompt = body["messages"][0]["content"]
    if "Write exactly three sections" in prompt:
        return GOOD_RUBRIC
    steps = re.search(r"A proof in (\d) steps", prompt)
    assert steps is not None
    return f"<assessment>ok</assessment><points>{steps.group(1)}</points>"


def test_rubrics_then_grade_then_agreement_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "graded.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in graded_rows()))
    with FakeServer(judge_script) as server:
        recipe = tmp_path / "meta.yaml"
        recipe.write_text(
            yaml.safe_dump(
                {
                    "run_dir": str(tmp_path / "run"),
                    "problems": {"source": "graded", "path": str(data)},
                    "models": {"judge": {"model": "fake-model", "base_urls": [server.url], "max_retries": 0}},
                    "judges": [{"kind": "proof", "style": "proofbench_strict"}, {"kind": "proof", "style": "simple"}],
                    "attempts": "human",
                }
            )
        )
        assert main(["rubrics", str(recipe)]) == 0
        assert main(["grade", str(recipe)]) == 0
        sent = server.requests
        assert sent == 2 + 2 * 6
        assert all("Key idea: the invariant" in b["messages"][0]["content"] for b in server.bodies[2:])
        assert main(["grade", str(recipe)]) == 0  # resumes: nothing left to do
        assert server.requests == sent
    run = tmp_path / "run"
    strict = ProofJudge(style="proofbench_strict").name
    grades = [Grade.model_validate_json(line) for line in (run / "grades" / f"{strict}.jsonl").read_text().splitlines()]
    assert sorted(g.points for g in grades) == [0, 0, 3, 3, 7, 7]
    table = (run / "agreement.md").read_text()
    # judge 7,3,0 vs human 7,2,0 per problem: advantages 11/3,-1/3,-10/3 vs 4,-1,-3, so the advantage
    # error is (1/3 + 2/3 + 1/3) / 3 = 4/9; MAE 1/3.
    assert f"| {strict} | proofbench_strict | 6 | 0.444 | 0.333 |" in table
    assert "| simple |" in table


def test_grade_without_judges_or_judge_model_exits_2(tmp_path: Path) -> None:
    data = tmp_path / "graded.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in graded_rows()))
    recipe = tmp_path / "r.yaml"
    base = {"run_dir": str(tmp_path / "run"), "problems": {"source": "graded", "path": str(data)}, "attempts": "human"}
    recipe.write_text(yaml.safe_dump({**base, "models": {}, "judges": [{"kind": "proof"}]}))
    assert main(["grade", str(recipe)]) == 2
    recipe.write_text(yaml.safe_dump({**base, "run_dir": str(tmp_path / "run2"), "models": {}}))
    assert main(["grade", str(recipe)]) == 2
