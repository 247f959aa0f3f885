"""The judge prompts' substance (issue 10, items 11, 12, 14, 16): what each style tells the grader, and the RL reward's form."""

from __future__ import annotations

import asyncio
import re

import pytest
from judge_engines import Scripted, make_llm, prompt_of

from qednano.grading.judge import ProofJudge
from qednano.records import Attempt, Grade, Problem

PROBLEM = Problem(
    id="p",
    statement="Prove that $n^2 \\ge n$ for every positive integer $n$.",
    solution="REFERENCE: since $n \\ge 1$, $n^2 = n \\cdot n \\ge n$.",
    rubric="## Checkpoints (7 pts total)\n1. [7 pts] The inequality.\nTotal (max 7)",
)
BARE = PROBLEM.model_copy(update={"rubric": "", "solution": ""})
PROOF = "As $n \\ge 1$, multiplying by $n$ gives $n^2 \\ge n$."


def prompt(style: str, problem: Problem = PROBLEM, **kw: object) -> tuple[str, list[str]]:
    return ProofJudge(style=style, **kw).prompt_for(problem, PROOF)  # type: ignore[arg-type]


def grade(judge: ProofJudge, engine: Scripted, problem: Problem = PROBLEM) -> Grade:
    attempt = Attempt(id="p/0", problem_id="p", sample=0, scaffold="direct", proof=PROOF)
    return asyncio.run(judge.grade(problem, attempt, make_llm(engine)))


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower())


# ---------------------------------------------------------------- item 11: the strict judge


@pytest.mark.parametrize("style", ["proofbench_strict", "qed_nano_train"])
def test_strict_prompt_has_the_training_judges_substance(style: str) -> None:
    text = squash(prompt(style)[0])
    assert "alternative" in text and "equivalent" in text and "checkpoint" in text  # other routes map onto checkpoints
    assert "different" in text and ("order" in text or "techniques" in text)
    assert "omitted steps are penalised" in text
    assert "conservative partial credit" in text and "plausible but not fully justified" in text
    assert "overlapping" in text and "only the larger" in text
    assert "the only route that earns credit" not in text  # the scheme is not the only route
    assert "when unsure" not in text and "give the lower" not in text


def test_strict_with_reference_presents_it_as_the_only_valid_solution() -> None:
    text, _ = prompt("proofbench_strict", reference=True)
    assert PROBLEM.solution in text and "only valid solution" in text
    assert "not necessarily the only" not in text
    assert PROBLEM.solution not in prompt("proofbench_strict")[0]  # off by default, like the paper's judge


def test_training_judge_style_never_shows_the_reference_and_answers_in_score_tags() -> None:
    assert PROBLEM.solution not in prompt("qed_nano_train")[0]
    with pytest.raises(ValueError, match="never shows a reference"):
        ProofJudge(style="qed_nano_train", reference=True)
    text = prompt("qed_nano_train")[0]
    assert "<score>" in text and "<points>" not in text
    g = grade(ProofJudge(style="qed_nano_train"), Scripted("<assessment>ok</assessment><score>5</score>"))
    assert g.points == 5
    # strict parsing: a <points> verdict, a decimal or an out-of-range score is no verdict
    engine = Scripted("<points>7</points>", "<score>6.5</score>", "<score>9</score>")
    g = grade(ProofJudge(style="qed_nano_train", max_reasks=2), engine)
    assert g.points is None and "no_verdict" in g.flags and len(engine.requests) == 3
    assert "<score>N</score>" in engine.requests[1]["messages"][-1]["content"]


# ---------------------------------------------------------------- item 12: Ma et al.'s ProofBench grader


def test_proofbench_prompt_has_the_originals_substance() -> None:
    text = squash(prompt("proofbench", reference=True)[0])
    assert "conservative partial credit" in text
    assert "award the larger deduction only" in text
    assert "when unsure" not in text and "lower one" not in text and "twice" not in text
    assert "do not penalise reordering" in text and "not necessarily the only" in text
    assert "final answer is authoritative" in text
    engine = Scripted("<points>4</points>")
    assert grade(ProofJudge(style="proofbench"), engine).points == 4
    assert "<<<BEGIN PROOF" in prompt_of(engine.requests[0])  # our fenced-proof wrapper stays


# ---------------------------------------------------------------- item 14: IMO-GradingBench's own protocol


def test_gradingbench_style_shows_only_problem_and_response_and_reads_four_labels() -> None:
    text, flags = prompt("imo_gradingbench")
    assert PROBLEM.statement in text and PROOF in text
    assert PROBLEM.solution not in text and "The inequality" not in text  # no reference, no guidelines
    assert flags == []
    for word in ("correct", "almost", "partial", "incorrect"):
        assert word in text
    for reply, points in (
        ("<grade>almost</grade>", 6),
        ("<grade>**Partial**</grade>", 1),
        ("<grade>correct</grade>", 7),
    ):
        assert grade(ProofJudge(style="imo_gradingbench"), Scripted(reply)).points == points
    engine = Scripted("<grade>mostly right</grade>", "<points>7</points>")
    g = grade(ProofJudge(style="imo_gradingbench", max_reasks=1), engine)
    assert g.points is None and len(engine.requests) == 2
    assert "correct, almost, partial, incorrect" in engine.requests[1]["messages"][-1]["content"]


# ---------------------------------------------------------------- item 16: no reference heading, no rubric

STYLES = ["imo_proofbench", "proofbench", "proofbench_strict", "qed_nano_train", "opc", "gimo", "simple"]


@pytest.mark.parametrize("style", STYLES)
def test_reference_off_prints_no_reference_heading(style: str) -> None:
    text, _ = prompt(style, reference=False)
    assert "reference solution\n" not in text.lower() and "# reference solution" not in text.lower()
    assert PROBLEM.solution not in text


@pytest.mark.parametrize("style", STYLES)
def test_without_a_rubric_the_prompt_says_how_to_grade(style: str) -> None:
    text, flags = prompt(style, BARE)
    assert "no_rubric" in flags
    low = squash(text)
    if style == "imo_proofbench":
        assert "no problem-specific guidelines are available" in low and "general levels" in low
    else:
        assert "no marking scheme is available" in low
        assert "7 for a complete and rigorous proof" in low and "in proportion" in low
        assert "checkpoints, deductions or scheme points" in low
