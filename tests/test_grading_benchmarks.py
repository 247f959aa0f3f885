"""Human-graded sources for grader meta-evaluation (IMO-GradingBench, MathArena grades), and grade + report on them."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from test_benchmarks import save_hub_copy

from qednano import cli
from qednano import config as cfg
from qednano.benchmarks.gradingbench import IMOGradingBench, MathArenaGradingBench
from qednano.benchmarks.sources import ProblemSource
from qednano.config import ConfigError
from qednano.eval.runs import RunRecipe
from qednano.records import Grade
from qednano.testing.fake_server import FakeServer

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
GRADINGBENCH = FIXTURES / "gradingbench.csv"
MATHARENA = FIXTURES / "matharena_gradingbench.jsonl"
REPO = Path(__file__).resolve().parents[1]


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------ IMO-GradingBench


def test_gradingbench_official_csv_gives_problems_and_human_graded_attempts() -> None:
    source = IMOGradingBench(path=str(GRADINGBENCH))
    problems = source.load()
    assert [p.id for p in problems] == ["GB-001", "GB-002", "GB-003"]
    first = problems[0]
    assert first.statement == "Prove that $n^3 - n$ is divisible by $6$ for every integer $n$."
    assert first.rubric.startswith("(Partial)\n 1. Factored") and "(Almost)" in first.rubric
    assert first.solution.startswith("$n^3-n=(n-1)n(n+1)$") and first.max_points == 7
    assert first.source == "imo-gradingbench" and problems[1].metadata == {"origin": "(Modified) IMO Shortlist"}
    attempts = source.attempts()
    # Reward labels correct / almost / partial / incorrect read as 7 / 6 / 1 / 0.
    assert [(a.id, a.human_points) for a in attempts] == [
        ("GB-001/0", 7.0),
        ("GB-001/1", 6.0),
        ("GB-001/2", 1.0),
        ("GB-001/3", 0.0),
        ("GB-002/0", 7.0),
        ("GB-002/1", 0.0),
        ("GB-003/0", 7.0),
        ("GB-003/1", 1.0),
    ]
    assert attempts[1].proof == "We have $n^3-n=(n-1)n(n+1)$.\nOne factor is even, and one is divisible by 3."
    assert attempts[2].metadata == {"grading_id": "GB-G0003", "reward": "partial", "points": 1.0}
    assert attempts[2].scaffold == "external" and '"so"' in attempts[2].proof
    assert [a.problem_id for a in IMOGradingBench(path=str(GRADINGBENCH), ids=["GB-003"]).attempts()] == ["GB-003"] * 2
    by_points = IMOGradingBench(path=str(GRADINGBENCH), human="points").attempts()
    assert [a.human_points for a in by_points] == [7.0, 6.0, 1.0, 0.0, 7.0, 0.0, 7.0, 1.0]


def test_gradingbench_hub_copy_gives_the_same_records(tmp_path: Path) -> None:
    snake = {
        "Grading ID": "grading_id",
        "Problem ID": "problem_id",
        "Problem": "problem",
        "Solution": "solution",
        "Grading guidelines": "grading_guidelines",
        "Response": "response",
        "Points": "points",
        "Reward": "reward",
        "Problem Source": "problem_source",
    }
    rows = [{snake[k]: int(v) if k == "Points" else v for k, v in r.items()} for r in csv_rows(GRADINGBENCH)]
    saved = save_hub_copy(rows, tmp_path / "saved")
    official = IMOGradingBench(path=str(GRADINGBENCH))
    mirror = IMOGradingBench(path=str(saved))
    assert mirror.load() == official.load()
    assert mirror.attempts() == official.attempts()


def test_gradingbench_bad_rows_name_file_line_and_field(tmp_path: Path) -> None:
    header = "Grading ID,Problem ID,Problem,Solution,Grading guidelines,Response,Points,Reward,Problem Source\n"
    path = tmp_path / "gradingbench.csv"
    path.write_text(
        header
        + "g1,P1,Prove $a$.,sol,guide,A proof.,7,correct,Novel Problem\n"
        + "g2,P1,Prove $a$.,sol,guide,Another proof.,3,so-so,Novel Problem\n"  # unknown label
        + "g3,P1,Prove $a$.,sol,guide,A third proof.,9,correct,Novel Problem\n"  # points out of range
        + "g4,P1,Prove $a$.,sol,guide,,0,incorrect,Novel Problem\n"  # no response
        + "g5,P1,Prove $b$.,sol,guide,A proof.,7,correct,Novel Problem\n"  # same id, other statement
        + "g6,P2,Prove $c$.,sol,guide,A proof.,correct,Novel Problem\n",  # a field missing: columns shifted
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        IMOGradingBench(path=str(path)).attempts()
    message = str(err.value)
    assert f"{path}:3: Reward: expected one of ['incorrect', 'partial', 'almost', 'correct'], got 'so-so'" in message
    assert f"{path}:4: Points: expected a number in 0..7, got '9'" in message
    assert f"{path}:5: Response: empty response" in message
    assert f"{path}:6: Problem: differs from an earlier row of problem 'P1'" in message
    assert f"{path}:7: Reward: expected one of" in message and f"{path}:7: Points: expected a number" in message
    assert f"{path}:2:" not in message


# ---------------------------------------------------------------------------- MathArena grades


def test_matharena_gradingbench_rubric_is_the_scheme_never_the_human_grading() -> None:
    source = MathArenaGradingBench(path=str(MATHARENA))
    problems = source.load()
    assert [p.id for p in problems] == ["usamo_2025-1", "usamo_2025-2"]
    assert problems[0].rubric == (
        "- Factorisation (3 points): Writes $n^2+n=n(n+1)$.\n- Parity (4 points): Shows one of $n, n+1$ is even."
    )
    assert problems[0].max_points == 7 and "Human grader" not in problems[0].rubric
    assert problems[1].rubric == "Full marks for a complete proof by contradiction (7 points)."
    attempts = source.attempts()
    assert [(a.id, a.human_points, a.metadata["model_name"]) for a in attempts] == [
        ("usamo_2025-1/0", 5.0, "model-a"),
        ("usamo_2025-1/1", 7.0, "model-b"),
        ("usamo_2025-2/0", 7.0, "model-a"),
        ("usamo_2025-2/1", 0.0, "model-b"),
    ]
    assert attempts[3].proof == "It is well known."


def test_matharena_gradingbench_bad_rows_name_file_line_and_field(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in MATHARENA.read_text(encoding="utf-8").splitlines()]
    rows[1]["points"] = 8  # above the scheme's 3 + 4
    rows[2]["points"] = "seven"
    rows[3]["answer"] = ""
    path = tmp_path / "graded.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        MathArenaGradingBench(path=str(path)).load()
    message = str(err.value)
    assert f"{path}:2: points: expected a number in 0..7, got 8" in message
    assert f"{path}:3: points: expected a number in 0..7, got 'seven'" in message
    assert f"{path}:4: answer: empty proof" in message and f"{path}:1:" not in message


def test_sources_are_picked_by_name_in_a_recipe() -> None:
    adapter = TypeAdapter(ProblemSource)
    picked = adapter.validate_python({"source": "imo-gradingbench", "path": str(GRADINGBENCH)})
    assert isinstance(picked, IMOGradingBench)
    picked = adapter.validate_python({"source": "matharena-gradingbench"})
    assert isinstance(picked, MathArenaGradingBench) and picked.hub == "lm-provers/matharena-gradingbench"


# ------------------------------------------------------------------ qednano grade, then report

JUDGED = {
    "among three consecutive integers one is even": 7,
    "One factor is even, and one is divisible by 3.": 6,
    "Checking $n=1,2,3$": 1,
    "Fermat's little theorem": 1,  # the humans gave 0
    "By AM-GM, $ab": 7,
    "Take $a=b=1$": 0,
    "Assume finitely many primes": 7,
    "it is prime.": 1,
}


def judge_script(body: dict[str, Any]) -> str:
    """A judge that finds the proof it is shown (inside the fence) and gives its points."""
    prompt = body["messages"][-1]["content"]
    proof = re.search(r"<<<BEGIN PROOF \w+>>>\n(.*)\n<<<END PROOF \w+>>>", prompt, re.S)
    assert proof is not None
    [points] = [p for snippet, p in JUDGED.items() if snippet in proof.group(1)]
    if "between the tags <grade> and </grade>" in prompt:  # IMO-GradingBench's own protocol: a label
        label = {7: "correct", 6: "almost", 1: "partial", 0: "incorrect"}[points]
        return f"Checked.\n<grade>{label}</grade>"
    return f"<assessment>checked</assessment>\n<points>{points} out of 7</points>"


def test_grade_then_report_with_the_gradingbench_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "test-key")
    recipe = cfg.PACKAGE_RECIPES / "eval" / "judges-gradingbench.yaml"
    run = tmp_path / "meta"
    with FakeServer(judge_script) as server:
        overrides = [
            f"run_dir={run}",
            f"problems.path={GRADINGBENCH}",
            f"models.judge.base_urls=[{server.url}]",
            "models.judge.max_retries=0",
        ]
        loaded = cfg.load(recipe, overrides, RunRecipe)
        assert loaded.attempts == "human" and isinstance(loaded.problems, IMOGradingBench)
        styles = [j.style for j in loaded.judges]
        assert styles == ["imo_gradingbench", "imo_proofbench", "proofbench_strict", "simple"]
        assert cli.main(["grade", str(recipe), *overrides]) == 0
        assert server.requests == 4 * 8
    own, imo = loaded.judges[0].name, loaded.judges[1].name
    grades = [Grade.model_validate_json(line) for line in (run / "grades" / f"{imo}.jsonl").read_text().splitlines()]
    assert sorted(g.points for g in grades) == [0, 1, 1, 1, 6, 7, 7, 7]
    # Human 7,6,1,0 | 7,0 | 7,1 against judge 7,6,1,1 | 7,0 | 7,1: one miss by one point. Advantages of GB-001:
    # human 3.5,2.5,-2.5,-3.5, judge 3.25,2.25,-2.75,-2.75: error (0.25 * 3 + 0.75) / 8 = 0.1875; MAE 1/8;
    # exact 7/8; Kendall tau-b 0.934 (scipy.stats.kendalltau on the same pairs).
    row = f"| {imo} | imo_proofbench | 8 | 0.188 | 0.125 | 0.354 | 100.0% | 87.5% | 0.934 | 0.12 | 0.0% | 0 |"
    assert row in (run / "agreement.md").read_text()
    # the benchmark's own protocol, read from labels: the same points, so the same row; `exact` is its 4-class accuracy
    assert (
        row.replace(f"| {imo} | imo_proofbench |", f"| {own} | imo_gradingbench |")
        in (run / "agreement.md").read_text()
    )
    assert cli.main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "## Grader agreement with human grades" in md and row in md
    assert md.index("## Grader agreement") < md.index("## Table 1")
