"""The built-in proof domain: problems are a function of their seed, the difficulty knob sets the proof length, rubrics are real rubrics, splits are disjoint."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest
from pydantic import TypeAdapter, ValidationError

from qednano.benchmarks.sources import ProblemSource
from qednano.builtin.check import check
from qednano.builtin.domain import generate, parse_statement, solve, vocabulary
from qednano.builtin.source import BuiltinSource
from qednano.builtin.teacher import answer
from qednano.data.schema import RLProblem
from qednano.grading.rubrics import check_rubric


def test_an_instance_is_a_function_of_its_seed_and_difficulty() -> None:
    assert generate(7, 4) == generate(7, 4)
    assert generate(7, 4).statement() != generate(8, 4).statement()
    source = BuiltinSource(seed=3, count=20, difficulty=(2, 6))
    assert source.load() == source.load()
    assert source.load() != BuiltinSource(seed=4, count=20, difficulty=(2, 6)).load()


def test_difficulty_sets_the_proof_length() -> None:
    means = [statistics.mean(generate(seed, d).proof_steps() for seed in range(40)) for d in range(1, 11)]
    assert all(a < b for a, b in itertools.pairwise(means)), means
    assert 4 <= means[0] <= 6 and 25 <= means[-1] <= 31, means
    assert max(generate(seed, 10).proof_steps() for seed in range(40)) <= 34


def test_every_rubric_passes_check_rubric_and_every_reference_proof_gets_7() -> None:
    for p in BuiltinSource(count=60, difficulty=(1, 10)).load():
        assert check_rubric(p.rubric, p.max_points).ok, (p.id, check_rubric(p.rubric).reason)
        assert check(p.statement, p.rubric, p.solution).points == 7.0, p.id


def test_the_statement_round_trips_and_the_solver_finds_a_proof_as_short_as_the_planted_one() -> None:
    for d in (1, 5, 10):
        for seed in range(20):
            instance = generate(seed, d)
            parsed = parse_statement(instance.statement())
            assert parsed is not None and parsed.statement() == instance.statement()
            found = solve(parsed)
            assert found is not None and len(found) == instance.proof_steps()


def test_distractors_offer_wrong_choices_every_problem() -> None:
    for seed in range(30):
        instance = generate(seed, 3)
        useful = instance.useful()
        heads = [r.head for r in instance.rules]
        dead_ends = [r for r in instance.rules if r.head not in useful and r.head in instance.derivable()]
        traps = [r for r in instance.rules if r.head in useful and heads.count(r.head) > 1]
        assert dead_ends and traps, seed


def test_train_and_heldout_splits_share_no_seed_and_no_problem() -> None:
    train = BuiltinSource(split="train", count=200, difficulty=(1, 10)).load()
    heldout = BuiltinSource(split="heldout", count=200, difficulty=(1, 10)).load()
    assert not {p.statement for p in train} & {p.statement for p in heldout}
    assert not {p.id for p in train} & {p.id for p in heldout}
    assert train[0].id == "builtin-train-s0-0000-d01"


def test_recipes_name_builtin_problems_and_bad_ranges_are_refused() -> None:
    adapter: TypeAdapter[object] = TypeAdapter(ProblemSource)
    source = adapter.validate_python({"source": "builtin", "split": "heldout", "count": 5, "difficulty": [3, 3]})
    assert isinstance(source, BuiltinSource)
    assert [p.metadata["level"] for p in source.load()] == [3] * 5
    with pytest.raises(ValidationError, match="difficulty"):
        adapter.validate_python({"source": "builtin", "difficulty": [4, 11]})
    with pytest.raises(ValidationError):
        adapter.validate_python({"source": "builtin", "split": "test"})


def test_the_difficulty_knob_is_not_the_rl_sets_measured_difficulty() -> None:
    (p,) = BuiltinSource(count=1, difficulty=(6, 6)).load()
    assert p.metadata["level"] == 6
    assert RLProblem.from_problem(p).difficulty is None  # measured later from the base model's grades


def test_the_domains_text_uses_only_its_vocabulary() -> None:
    words = set(vocabulary()) | {"<think>", "</think>"}
    assert len(words) == 13 + 100 + 99 + 2
    for d in (1, 10):
        for seed in range(20):
            instance = generate(seed, d)
            thought, _ = answer(instance.statement(), random.Random(seed), think=True, error_rate=0.5)
            text = instance.statement() + "\n" + instance.proof() + "\n" + thought
            assert set(text.split()) <= words, set(text.split()) - words
            assert len(instance.rules) <= 66
