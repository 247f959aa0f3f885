"""Rubrics (`qednano.grading.rubrics`): the check, the normalisers, writing with re-asks, the `rubrics` stage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from judge_engines import Scripted, make_llm, prompt_of

from qednano.eval.pipeline import write_rubrics
from qednano.grading.rubrics import (
    RUBRICS_FILE,
    RubricError,
    check_rubric,
    normalise_rubric,
    rubric_from_guidelines,
    rubric_from_items,
    write_rubric,
)
from qednano.records import Problem
from qednano.store import RunDir

GOOD = """## Checkpoints (7 pts total)
1. [1 pts] Setup: reduces to the case $a \\le b \\le c$.
2. [3 pts] Key lemma: proves $f(n+1) > f(n)$ for all $n$.
3. [2 pts] Bound: shows $f(n) \\le 2n$.
4. [1 pts] Conclusion: combines the lemma and the bound.
Total (max 7)

## Zero-credit items
- Restating the problem or checking small cases.
- Stating the answer without proof.

## Deductions
- -1: a computational slip that does not affect the argument.
- Cap at 5/7: the lemma is used without proof for $n = 1$.
"""

CHAINS = """**Checkpoints (7 pts total)**
1. (1 pt) Common setup: introduces the sequence.
Chain A: induction
2. (6 pts) Completes the induction.
Chain B: generating functions
2. (3 pts) Finds the generating function.
3. (3 pts) Extracts the coefficient.
**Score exactly one chain, the one that gives the most points; never add points across chains.**
Total (max 7)

**Zero-credit items**
- Conjectures.

**Deductions**
- -2: circular reasoning.
"""


def test_good_rubrics_pass() -> None:
    check = check_rubric(GOOD)
    assert check.ok, check.reason
    assert check.points == [1, 3, 2, 1]
    assert check_rubric(CHAINS).ok, check_rubric(CHAINS).reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (GOOD.replace("[3 pts] Key", "[4 pts] Key"), "sum to 8, more than 7"),
        (GOOD.replace("[3 pts] Key", "[2 pts] Key"), "sum to 6, not 7"),
        (GOOD.replace("[3 pts] Key", "[2.5 pts] Key"), "whole numbers"),
        (GOOD.replace("[1 pts] Conclusion", "[0 pts] Conclusion").replace("[3 pts]", "[4 pts]"), "worth 0 points"),
        (GOOD.split("## Zero-credit")[0] + "## Deductions\n- -1: slip\n", "missing section 'Zero-credit items'"),
        (GOOD.split("## Deductions")[0], "missing section 'Deductions'"),
        (GOOD.replace("## Checkpoints (7 pts total)", "## Scoring"), "missing section 'Checkpoints'"),
        (
            GOOD.replace(
                "- -1: a computational slip that does not affect the argument.\n- Cap at 5/7: the lemma is used without proof for $n = 1$.\n",
                "Nothing here.\n",
            ),
            "has no items",
        ),
        (GOOD.replace("Total (max 7)", "Total (max 8)"), "Total line says 8"),
        (GOOD.replace("Cap at 5/7", "Cap at 7/7"), "not below 7/7"),
        (CHAINS.replace("(6 pts) Completes", "(7 pts) Completes"), "chain A sums to 8"),
        (
            CHAINS.replace("(6 pts) Completes", "(5 pts) Completes").replace("(3 pts) Extracts", "(2 pts) Extracts"),
            "best chain sums to 6",
        ),
        (
            "## Checkpoints\nProve it.\n## Zero-credit items\n- x\n## Deductions\n- -1: y",
            "no checkpoint carries points",
        ),
        (
            "## Checkpoints\n"
            + "".join(f"{i}. [1 pts] step\n" for i in range(21))
            + "## Zero-credit items\n- x\n## Deductions\n- None.",
            "over-fragmented",
        ),
        ("## Deductions\n- -1: y\n## Zero-credit items\n- x\n## Checkpoints\n1. [7 pts] all\n", "order"),
    ],
)
def test_bad_rubrics_are_rejected_with_the_reason(text: str, reason: str) -> None:
    check = check_rubric(text)
    assert not check.ok
    assert reason in check.reason, check.reason


def test_other_maximum() -> None:
    text = GOOD.replace("7 pts total", "10 pts total").replace("Total (max 7)", "Total (max 10)")
    text = text.replace("[3 pts] Key", "[6 pts] Key").replace("Cap at 5/7", "Cap at 5/10")
    assert check_rubric(text, max_points=10).ok, check_rubric(text, max_points=10).reason
    assert not check_rubric(text).ok


def test_matharena_items_are_normalised_and_pass() -> None:
    items = [
        {"title": "Lower bound", "points": 3, "desc": "Shows that $n \\ge 4$."},
        {"title": "Construction", "points": 4, "description": "Gives a valid example for $n = 4$."},
    ]
    text = rubric_from_items(items)
    assert check_rubric(text).ok, check_rubric(text).reason
    assert "1. [3 pts] Lower bound: Shows that $n \\ge 4$." in text
    assert "2. [4 pts] Construction: Gives a valid example" in text
    legacy = [{"title": "All", "max_points": 7, "grading_scheme_desc": "Everything."}]
    assert check_rubric(rubric_from_items(legacy)).points == [7]  # `max_points` key read too
    assert normalise_rubric(items) == text
    import json

    assert normalise_rubric(json.dumps(items)) == text


def test_imo_proofbench_guidelines_are_normalised_and_pass() -> None:
    guidelines = (
        "(Partial)\n 1. Guessed the solution correctly\n 2. Proved $f(f(y)) = 2f(y) + f(0)$\n"
        "(Almost)\n 1. Solved correctly, but did not verify the candidates."
    )
    text = normalise_rubric(guidelines)
    assert text == rubric_from_guidelines(guidelines)
    assert check_rubric(text).ok, check_rubric(text).reason
    assert check_rubric(text).points == [7]
    assert "- Partial (1 pt): Guessed the solution correctly" in text
    assert "- Almost (6 pts): Solved correctly, but did not verify the candidates." in text


def test_real_imo_proofbench_guidelines_all_normalise(imobench_dir: Path) -> None:
    import csv

    with open(imobench_dir / "proofbench_v2.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        text = normalise_rubric(row["Grading guidelines"])
        assert check_rubric(text).ok, (row["Problem ID"], check_rubric(text).reason)
        assert "Partial (1 pt)" in text


def test_plain_text_passes_through() -> None:
    assert normalise_rubric("  1. (7 pts) Everything.  ") == "1. (7 pts) Everything."
    assert normalise_rubric(None) == ""


PROBLEM = Problem(id="p1", statement="Prove that $f$ is increasing.", solution="By the key lemma ...")


def test_write_rubric_cleans_and_checks() -> None:
    engine = Scripted("<thought>Let me plan.</thought>Here is the scheme.\n\n" + GOOD)
    text = asyncio.run(write_rubric(PROBLEM, make_llm(engine)))
    assert text == GOOD.strip()
    prompt = prompt_of(engine.requests[0])
    assert PROBLEM.statement in prompt and PROBLEM.solution in prompt and "{{" not in prompt


def test_write_rubric_reasks_with_the_reason_then_gives_up() -> None:
    bad = GOOD.replace("[3 pts] Key", "[4 pts] Key")
    engine = Scripted(bad, GOOD)
    assert asyncio.run(write_rubric(PROBLEM, make_llm(engine), tries=3)) == GOOD.strip()
    follow_up = engine.requests[1]["messages"]
    assert [m["role"] for m in follow_up] == ["user", "assistant", "user"]
    assert "sum to 8" in follow_up[2]["content"]
    engine = Scripted(bad)
    with pytest.raises(RubricError, match="no acceptable rubric in 2 tries"):
        asyncio.run(write_rubric(PROBLEM, make_llm(engine), tries=2))
    assert len(engine.requests) == 2


def test_rubrics_stage_writes_resumes_and_keeps_dataset_rubrics(tmp_path: Path) -> None:
    store = RunDir(tmp_path / "run")
    given = Problem(id="p2", statement="Show it.", rubric='[{"title": "All", "points": 7, "desc": "Everything."}]')
    failing = Problem(id="p3", statement="Hard one.")
    engine = Scripted(lambda r: GOOD if "increasing" in prompt_of(r) else "no rubric here")
    outcome = asyncio.run(write_rubrics([PROBLEM, given, failing], make_llm(engine), store, tries=2))
    assert outcome.done == 2 and list(outcome.failed) == ["p3"]
    written = {p.id: p for p in store.read(RUBRICS_FILE, Problem)}
    assert written["p1"].rubric == GOOD.strip() and written["p1"].metadata["rubric_by"] == "fake-judge"
    assert written["p2"].rubric.startswith("## Checkpoints (7 pts total)\n1. [7 pts] All: Everything.")
    assert written["p2"].metadata["rubric_by"] == "dataset"
    sent = len(engine.requests)
    outcome = asyncio.run(write_rubrics([PROBLEM, given], make_llm(engine), store))
    assert outcome.skipped == 2 and outcome.done == 0 and len(engine.requests) == sent
