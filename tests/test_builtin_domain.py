"""The built-in proof domain: problems are a function of their seed, the difficulty knob sets the proof length, rubrics are real rubrics, splits are disjoint."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest
from pydantic import TypeAdapter, ValidationError

from qednano.benchmarks.sources import ProblemSource
from qednano.builtin.check import check
from qednano.builtin.domain import MAX_RULES, Instance, circuit, generate, parse_statement, solve, theory, vocabulary
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
    assert 3 <= means[0] <= 5 and 30 <= means[-1] <= 45, means
    assert max(generate(seed, 10).proof_steps() for seed in range(40)) <= 70


def test_every_rubric_passes_check_rubric_and_every_reference_proof_gets_7() -> None:
    for p in BuiltinSource(count=60, difficulty=(1, 10)).load():
        assert check_rubric(p.rubric, p.max_points).ok, (p.id, check_rubric(p.rubric).reason)
        assert check(p.statement, p.rubric, p.solution).points == 7.0, p.id


def test_the_statement_round_trips_and_the_solver_finds_the_reference_proof_from_it_alone() -> None:
    for d in (1, 5, 10):
        for seed in range(20):
            instance = generate(seed, d)
            parsed = parse_statement(instance.statement())
            assert parsed is not None and parsed.statement() == instance.statement()
            assert solve(parsed) == instance.reference
    assert solve(Instance(("p1",), "p1", rules=())) == ()
    assert solve(Instance(("p1",), "p2", rules=())) is None


def test_the_theory_is_a_circuit_where_exactly_one_value_of_each_wire_follows() -> None:
    c = circuit()
    assert len(theory()) == MAX_RULES == 360 and [r.name for r in theory()] == [f"r{i}" for i in range(1, 361)]
    for seed in range(20):
        instance = generate(seed, 4)
        known = instance.derivable()
        wires = [(c.fact(w, 0) in known, c.fact(w, 1) in known) for w in range(len(c.names) // 2)]
        assert all(a != b for a, b in wires), seed
        assert len(instance.given) == 10 and instance.chain[-1] == instance.goal and len(instance.chain) == 6


def test_distractors_offer_wrong_choices_every_problem() -> None:
    for seed in range(30):
        instance = generate(seed, 3)
        useful, known = instance.useful(), instance.derivable()
        dead_ends = [r for r in instance.rules if r.head not in useful and set(r.body) <= known]
        traps = [r for r in instance.rules if r.head in useful and not set(r.body) <= known]
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
    assert len(words) == 12 + 260 + 360 + 2
    for d in (1, 10):
        for seed in range(20):
            instance = generate(seed, d)
            thought, _ = answer(instance.statement(), random.Random(seed), think=True, error_rate=0.5)
            text = instance.statement() + "\n" + instance.proof() + "\n" + thought
            assert set(text.split()) <= words, set(text.split()) - words
