"""Difficulty: mean grade per problem over graded attempts, and the paper's RL selection rule on fixed scores."""

from __future__ import annotations

from qednano.data.difficulty import Selection, annotate, difficulty, histogram, keep_draw, select
from qednano.records import Grade, Problem


def grade(problem: str, sample: int, points: float | None) -> Grade:
    return Grade(attempt_id=f"{problem}/{sample}", problem_id=problem, judge="j", points=points, max_points=7)


def test_difficulty_is_the_mean_over_graded_attempts_ungraded_left_out() -> None:
    problems = [Problem(id=p, statement=p) for p in ("a", "b", "c")]
    grades = [grade("a", 0, 7), grade("a", 1, 0), grade("a", 2, None), grade("b", 0, None)]
    measured = difficulty(problems, grades)
    assert measured["a"].mean == 0.5 and measured["a"].graded == 2 and measured["a"].ungraded == 1
    assert measured["b"].mean is None and measured["b"].ungraded == 1
    assert measured["c"].mean is None and measured["c"].graded == 0
    regraded = difficulty(problems, [grade("a", 0, 0), grade("a", 0, 7)])  # the last grade of an attempt counts
    assert regraded["a"].mean == 1.0
    [a, *_] = annotate(problems, measured)
    assert a.metadata["difficulty"] == 0.5 and a.metadata["difficulty_graded"] == 2


SCORES = {
    "solved": 1.0,
    "never": 0.0,
    "h1": 0.05,
    "h2": 0.1,
    "m1": 0.4,
    "m2": 0.45,
    "e1": 0.9,
    "e2": 0.95,
    "none": None,
}


def fixed() -> list[Problem]:
    return [Problem(id=k, statement=k, metadata={"difficulty": v}) for k, v in SCORES.items()]


def test_selection_drops_always_and_never_solved_and_shapes_towards_hard() -> None:
    kept, dropped = select(fixed(), Selection(temperature=None))
    assert [p.id for p in kept] == ["h1", "h2", "m1", "m2", "e1", "e2"]
    reasons = dict((p.id, r) for p, r in dropped)
    assert reasons["solved"].startswith("solved every time") and reasons["never"].startswith("never solved")
    assert reasons["none"] == "no measured difficulty"

    rule = Selection(peak=0.1, temperature=0.2, seed=3)
    kept, dropped = select(fixed(), rule)
    ids = [p.id for p in kept]
    assert {"h1", "h2"} <= set(ids)  # at or below the peak: always kept
    for p, reason in dropped:
        if reason.startswith("shaped out"):
            d = SCORES[p.id]
            assert d is not None and keep_draw(p.id, 3) >= 2.718281828 ** (-(d - 0.1) / 0.2)
    assert select(fixed(), rule) == (kept, dropped)  # seeded: the same every time


def test_shaping_keeps_fewer_easy_than_hard_problems_over_many() -> None:
    many = [Problem(id=f"p{i}", statement=str(i), metadata={"difficulty": (i % 9 + 1) / 10}) for i in range(900)]
    kept, _ = select(many, Selection(temperature=0.3))
    hist = histogram(p.metadata["difficulty"] for p in kept)
    assert hist[1] > hist[4] > hist[8] > 0  # monotone falling from the hard end: a heavy tail of easy ones


def test_max_problems_keeps_the_hardest_and_histogram_bins() -> None:
    kept, dropped = select(fixed(), Selection(temperature=None, max_problems=2))
    assert [p.id for p in kept] == ["h1", "h2"] and sum(r.startswith("over max_problems") for _, r in dropped) == 4
    assert histogram([0.0, 0.05, 0.5, 1.0, None]) == [2, 0, 0, 0, 0, 1, 0, 0, 0, 1]
