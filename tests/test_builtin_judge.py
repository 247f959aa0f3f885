"""The built-in domain's exact judge on hand-written proofs: full marks, the rubric's deduction per fault, zero for echoes.

The instance is written by hand (not generated), so each expected score follows from the
rubric's text alone: checkpoints p3 (2), p5 (2), goal p6 (3); deductions -2 invalid step,
-1 unjustified conclusion, -1 wrong citation, -1 distractor step.
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import TypeAdapter

from qednano.builtin.check import check, read_rubric
from qednano.builtin.domain import Instance, Rule, Step, rubric
from qednano.builtin.judge import BuiltinJudge
from qednano.builtin.source import problem
from qednano.grading.judge import JudgeConfig
from qednano.grading.rubrics import check_rubric
from qednano.records import Attempt, Completion, Problem

RULES = (
    Rule("r1", ("p1",), "p3"),
    Rule("r2", ("p3", "p2"), "p4"),
    Rule("r3", ("p4",), "p5"),
    Rule("r4", ("p5",), "p6"),
    Rule("r5", ("p1",), "p7"),  # dead end
    Rule("r6", ("p4", "p9"), "p5"),  # trap: p9 is never derivable
    Rule("r7", ("p7",), "p8"),  # dead end
)
REFERENCE = (
    Step("p3", "r1", ("p1",)),
    Step("p4", "r2", ("p3", "p2")),
    Step("p5", "r3", ("p4",)),
    Step("p6", "r4", ("p5",)),
)
INSTANCE = Instance(("p1", "p2"), RULES, "p6", reference=REFERENCE, chain=("p3", "p4", "p5", "p6"))
STATEMENT = INSTANCE.statement()
RUBRIC = rubric(INSTANCE)
CORRECT = "p3 by r1 from p1\np4 by r2 from p3 p2\np5 by r3 from p4\np6 by r4 from p5\nqed"


def score(proof: str, **kw: bool) -> tuple[float | None, list[str]]:
    result = check(STATEMENT, RUBRIC, proof, **kw)
    return result.points, result.flags


def test_the_hand_written_rubric_is_a_real_rubric_with_these_checkpoints() -> None:
    assert check_rubric(RUBRIC).ok, check_rubric(RUBRIC).reason
    checkpoints, deductions = read_rubric(RUBRIC)
    assert checkpoints == [("p3", 2), ("p5", 2), ("p6", 3)]
    assert deductions == {"invalid step": 2, "unjustified conclusion": 1, "wrong citation": 1, "distractor step": 1}


def test_a_correct_proof_gets_7_in_any_premise_order_and_the_reference_proof_too() -> None:
    assert score(CORRECT) == (7.0, [])
    assert score(CORRECT.replace("from p3 p2", "from p2 p3")) == (7.0, [])
    assert score(INSTANCE.proof()) == (7.0, [])
    assert score(CORRECT + "\nanything after qed is not read") == (7.0, [])


@pytest.mark.parametrize(
    ("proof", "points", "flag"),
    [
        # skipped justification: the fact follows, no rule is cited
        (CORRECT.replace("p4 by r2 from p3 p2", "p4"), 6.0, "unjustified_conclusion"),
        (CORRECT.replace("p4 by r2 from p3 p2", "p4 from p3 p2"), 6.0, "unjustified_conclusion"),
        # wrong citation: a trap for the same fact, or the right rule with wrong premises
        (CORRECT.replace("p5 by r3 from p4", "p5 by r6 from p4 p9"), 6.0, "wrong_citation"),
        (CORRECT.replace("p4 by r2 from p3 p2", "p4 by r2 from p3"), 6.0, "wrong_citation"),
        (CORRECT.replace("p4 by r2 from p3 p2", "p4 by r9 from p3 p2"), 6.0, "wrong_citation"),
        # distractor step: a valid dead-end step, or a repeated one
        (CORRECT.replace("qed", "p7 by r5 from p1\nqed"), 6.0, "distractor_step"),
        (CORRECT.replace("qed", "p3 by r1 from p1\nqed"), 6.0, "distractor_step"),
        # invalid step: p8 needs p7, which is not established
        (CORRECT.replace("qed", "p8 by r7 from p7\nqed"), 5.0, "invalid_step"),
        (CORRECT.replace("qed", "this is not a step\nqed"), 5.0, "invalid_step"),
    ],
)
def test_each_kind_of_error_costs_the_rubrics_deduction(proof: str, points: float, flag: str) -> None:
    got, flags = score(proof)
    assert got == points
    assert flags == [flag]


def test_two_faults_add_up_and_a_distractor_with_a_bad_citation_pays_for_both() -> None:
    proof = CORRECT.replace("p4 by r2 from p3 p2", "p4").replace("qed", "p7 by r1 from p1\nqed")
    assert score(proof) == (4.0, ["unjustified_conclusion", "wrong_citation", "distractor_step"])


def test_a_proof_cut_short_keeps_the_checkpoints_it_reached() -> None:
    lines = CORRECT.splitlines()
    assert score("\n".join(lines[:1])) == (2.0, ["truncated"])
    assert score("\n".join(lines[:2])) == (2.0, ["truncated"])
    assert score("\n".join(lines[:3])) == (4.0, ["truncated"])
    assert score("\n".join(lines[:4])) == (7.0, [])  # the goal is derived; qed itself earns nothing


def test_qed_without_the_goal_is_an_unjustified_conclusion() -> None:
    assert score("p3 by r1 from p1\nqed") == (2.0, ["unjustified_conclusion"])


def test_a_skipped_step_makes_the_steps_that_need_it_invalid() -> None:
    # p4 never established: p5 and p6 do not follow; 2 invalid lines outnumber 1 valid one.
    assert score("p3 by r1 from p1\np5 by r3 from p4\np6 by r4 from p5\nqed") == (
        0.0,
        ["invalid_step", "unjustified_conclusion"],
    )


def test_an_echo_of_the_problem_or_of_another_problems_proof_gets_0() -> None:
    points, flags = score(STATEMENT)
    assert points == 0.0 and "echo" in flags
    assert score("")[0] == 0.0
    for index in range(30):
        other = problem("train", 0, index, 1 + index % 10)
        assert score(other.solution)[0] == 0.0, other.id
    # and the other way round: this problem's proof on generated problems
    for index in range(30):
        target = problem("heldout", 0, index, 1 + index % 10)
        donor = problem("heldout", 0, index + 1, 1 + (index + 1) % 10)
        assert check(target.statement, target.rubric, donor.solution).points == 0.0
        assert check(target.statement, target.rubric, target.statement).points == 0.0


def test_the_judge_scores_by_the_rubric_text() -> None:
    harsher = RUBRIC.replace("- -1: each step that cites no rule", "- -3: each step that cites no rule")
    assert check(STATEMENT, harsher, CORRECT.replace("p4 by r2 from p3 p2", "p4")).points == 4.0
    richer = RUBRIC.replace("[2 pts] Derives p3", "[1 pts] Derives p3").replace(
        "[3 pts] Derives the goal", "[4 pts] Derives the goal"
    )
    assert check(STATEMENT, richer, "p3 by r1 from p1").points == 1.0


def attempt(proof: str, truncated: bool = False) -> Attempt:
    call = Completion(step="solve", model="m", messages=[], text=proof, truncated=truncated)
    return Attempt(id="hand/0", problem_id="hand", sample=0, scaffold="direct", proof=proof, transcript=[call])


def test_the_judge_protocol_gives_grades_the_reports_and_rewards_read() -> None:
    judge = TypeAdapter(JudgeConfig).validate_python({"kind": "builtin", "label": "exact"})
    assert isinstance(judge, BuiltinJudge) and judge.name.startswith("exact-")
    hand = Problem(id="hand", statement=STATEMENT, solution=CORRECT, rubric=RUBRIC)
    grade = asyncio.run(judge.grade(hand, attempt(CORRECT), None))
    assert (grade.points, grade.max_points, grade.flags, grade.score) == (7.0, 7, [], 1.0)
    assert grade.metadata["checkpoints"] == {"p3": 2, "p5": 2, "p6": 3}
    assert "score: 7/7" in grade.explanation
    # A cut-off attempt: its last, partial line is not read as a step, and it is flagged.
    cut = asyncio.run(judge.grade(hand, attempt("p3 by r1 from p1\np4 by r2 from p3 p2\np5 by", True), None))
    assert (cut.points, cut.flags) == (2.0, ["truncated"])


def test_a_problem_not_in_the_builtin_form_is_ungraded_not_zero() -> None:
    judge = BuiltinJudge()
    other = Problem(id="x", statement="Prove that 1 + 1 = 2.", rubric=RUBRIC)
    grade = asyncio.run(judge.grade(other, attempt(CORRECT), None))
    assert grade.points is None and grade.flags == ["not_builtin"]
    no_rubric = Problem(id="y", statement=STATEMENT)
    assert asyncio.run(judge.grade(no_rubric, attempt(CORRECT), None)).points is None
