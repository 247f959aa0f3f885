"""The built-in domain's exact judge on hand-written proofs: full marks, the rubric's deduction per fault, zero for echoes.

The problem is `builtin-train-s0-0000-d01` (`generate(0, 1)`), written out here with the
theory's rules its proofs use, so each expected score follows from the rubric's text alone:
checkpoints p239 (2), p256 (2), goal p212 (3); deductions -2 invalid step, -1 unjustified
conclusion, -1 wrong citation, -1 distractor step. The theory's rules used below:

    r150: p239 from p219      r250: p239 from p130 (a trap: p130 is not given)
    r264: p256 from p239      r45:  p5 from p239     r195: p5 from p27 (a trap)
    r89:  p212 from p256 p5   r36:  p4 from p30 (a dead end)   r226: p106 from p4
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import TypeAdapter

from qednano.builtin.check import check, read_rubric
from qednano.builtin.domain import generate, rubric, theory
from qednano.builtin.judge import BuiltinJudge
from qednano.builtin.source import problem
from qednano.grading.judge import JudgeConfig
from qednano.grading.rubrics import check_rubric
from qednano.records import Attempt, Completion, Problem

STATEMENT = "given : p230 p30 p255 p217 p70 p100 p219 p124 p244 p113\ngoal : p212"
INSTANCE = generate(0, 1)
RUBRIC = rubric(INSTANCE)
CORRECT = "p239 by r150 from p219\np256 by r264 from p239\np5 by r45 from p239\np212 by r89 from p256 p5\nqed"


def test_the_hand_written_problem_is_the_generated_one_with_these_rules() -> None:
    assert INSTANCE.statement() == STATEMENT
    rules = {r.name: (r.head, r.body) for r in theory()}
    assert rules["r150"] == ("p239", ("p219",)) and rules["r250"] == ("p239", ("p130",))
    assert rules["r264"] == ("p256", ("p239",)) and rules["r45"] == ("p5", ("p239",))
    assert rules["r195"] == ("p5", ("p27",)) and rules["r89"] == ("p212", ("p256", "p5"))
    assert rules["r36"] == ("p4", ("p30",)) and rules["r226"] == ("p106", ("p4",))


def score(proof: str, **kw: bool) -> tuple[float | None, list[str]]:
    result = check(STATEMENT, RUBRIC, proof, **kw)
    return result.points, result.flags


def test_the_hand_written_rubric_is_a_real_rubric_with_these_checkpoints() -> None:
    assert check_rubric(RUBRIC).ok, check_rubric(RUBRIC).reason
    checkpoints, deductions = read_rubric(RUBRIC)
    assert checkpoints == [("p239", 2), ("p256", 2), ("p212", 3)]
    assert deductions == {"invalid step": 2, "unjustified conclusion": 1, "wrong citation": 1, "distractor step": 1}


def test_a_correct_proof_gets_7_in_any_premise_order_and_the_reference_proof_too() -> None:
    assert score(CORRECT) == (7.0, [])
    assert score(CORRECT.replace("from p256 p5", "from p5 p256")) == (7.0, [])
    assert score(INSTANCE.proof()) == (7.0, [])
    assert score(CORRECT + "\nanything after qed is not read") == (7.0, [])


@pytest.mark.parametrize(
    ("proof", "points", "flag"),
    [
        # skipped justification: the fact follows, no rule is cited
        (CORRECT.replace("p256 by r264 from p239", "p256"), 6.0, "unjustified_conclusion"),
        (CORRECT.replace("p256 by r264 from p239", "p256 from p239"), 6.0, "unjustified_conclusion"),
        # wrong citation: a trap for the same fact, or the right rule with wrong premises
        (CORRECT.replace("p5 by r45 from p239", "p5 by r195 from p27"), 6.0, "wrong_citation"),
        (CORRECT.replace("p212 by r89 from p256 p5", "p212 by r89 from p256"), 6.0, "wrong_citation"),
        (CORRECT.replace("p212 by r89 from p256 p5", "p212 by r999 from p256 p5"), 6.0, "wrong_citation"),
        # distractor step: a valid dead-end step, or a repeated one
        (CORRECT.replace("qed", "p4 by r36 from p30\nqed"), 6.0, "distractor_step"),
        (CORRECT.replace("qed", "p239 by r150 from p219\nqed"), 6.0, "distractor_step"),
        # invalid step: p106 needs p4, which is not established
        (CORRECT.replace("qed", "p106 by r226 from p4\nqed"), 5.0, "invalid_step"),
        (CORRECT.replace("qed", "this is not a step\nqed"), 5.0, "invalid_step"),
    ],
)
def test_each_kind_of_error_costs_the_rubrics_deduction(proof: str, points: float, flag: str) -> None:
    got, flags = score(proof)
    assert got == points
    assert flags == [flag]


def test_two_faults_add_up_and_a_distractor_with_a_bad_citation_pays_for_both() -> None:
    proof = CORRECT.replace("p256 by r264 from p239", "p256").replace("qed", "p4 by r150 from p30\nqed")
    assert score(proof) == (4.0, ["unjustified_conclusion", "wrong_citation", "distractor_step"])


def test_a_proof_cut_short_keeps_the_checkpoints_it_reached() -> None:
    lines = CORRECT.splitlines()
    assert score("\n".join(lines[:1])) == (2.0, ["truncated"])
    assert score("\n".join(lines[:2])) == (4.0, ["truncated"])
    assert score("\n".join(lines[:3])) == (4.0, ["truncated"])
    assert score("\n".join(lines[:4])) == (7.0, [])  # the goal is derived; qed itself earns nothing


def test_qed_without_the_goal_is_an_unjustified_conclusion() -> None:
    assert score("p239 by r150 from p219\nqed") == (2.0, ["unjustified_conclusion"])


def test_a_skipped_step_makes_the_steps_that_need_it_invalid() -> None:
    # p256 and p5 never established: the goal's step does not follow (twice); 2 invalid lines outnumber 1 valid.
    assert score("p239 by r150 from p219\np212 by r89 from p256 p5\np212 by r89 from p256 p5\nqed") == (
        0.0,
        ["invalid_step", "unjustified_conclusion"],
    )


def test_an_echo_of_the_problem_or_of_another_problems_proof_gets_0() -> None:
    points, flags = score(STATEMENT)
    assert points == 0.0 and "echo" in flags
    assert score("")[0] == 0.0
    # Another problem's proof: the theory is shared, so its steps may hold here too, but
    # mostly they establish facts this goal does not use, and those outnumbering the rest is 0.
    paid = []
    for index in range(100):
        target = problem("heldout", 0, index, 1 + index % 10)
        donor = problem("heldout", 0, index + 1, 1 + (index + 1) % 10)
        assert check(target.statement, target.rubric, target.statement).points == 0.0
        copied = check(target.statement, target.rubric, donor.solution)
        if copied.points:
            ok = [ln for ln in copied.lines if ln.verdict in ("ok", "wrong citation", "unjustified conclusion")]
            assert len(ok) * 2 >= len(copied.lines) and copied.earned, target.id  # paid only for steps that count
            paid.append(copied.points)
    assert len(paid) <= 10, paid


def test_the_judge_scores_by_the_rubric_text() -> None:
    harsher = RUBRIC.replace("- -1: each step that cites no rule", "- -3: each step that cites no rule")
    assert check(STATEMENT, harsher, CORRECT.replace("p256 by r264 from p239", "p256")).points == 4.0
    richer = RUBRIC.replace("[2 pts] Derives p239", "[1 pts] Derives p239").replace(
        "[3 pts] Derives the goal", "[4 pts] Derives the goal"
    )
    assert check(STATEMENT, richer, "p239 by r150 from p219").points == 1.0


def attempt(proof: str, truncated: bool = False) -> Attempt:
    call = Completion(step="solve", model="m", messages=[], text=proof, truncated=truncated)
    return Attempt(id="hand/0", problem_id="hand", sample=0, scaffold="direct", proof=proof, transcript=[call])


def test_the_judge_protocol_gives_grades_the_reports_and_rewards_read() -> None:
    judge = TypeAdapter(JudgeConfig).validate_python({"kind": "builtin", "label": "exact"})
    assert isinstance(judge, BuiltinJudge) and judge.name.startswith("exact-")
    hand = Problem(id="hand", statement=STATEMENT, solution=CORRECT, rubric=RUBRIC)
    grade = asyncio.run(judge.grade(hand, attempt(CORRECT), None))
    assert (grade.points, grade.max_points, grade.flags, grade.score) == (7.0, 7, [], 1.0)
    assert grade.metadata["checkpoints"] == {"p239": 2, "p256": 2, "p212": 3}
    assert "score: 7/7" in grade.explanation
    # A cut-off attempt: its last, partial line is not read as a step, and it is flagged.
    cut = asyncio.run(judge.grade(hand, attempt("p239 by r150 from p219\np5 by r45 from p239\np256 by", True), None))
    assert (cut.points, cut.flags) == (2.0, ["truncated"])


def test_a_problem_not_in_the_builtin_form_is_ungraded_not_zero() -> None:
    judge = BuiltinJudge()
    other = Problem(id="x", statement="Prove that 1 + 1 = 2.", rubric=RUBRIC)
    grade = asyncio.run(judge.grade(other, attempt(CORRECT), None))
    assert grade.points is None and grade.flags == ["not_builtin"]
    no_rubric = Problem(id="y", statement=STATEMENT)
    assert asyncio.run(judge.grade(no_rubric, attempt(CORRECT), None)).points is None
