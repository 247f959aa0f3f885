"""The shared knockout (scaffolds/tournament.py) and the seeded RNG it is driven by."""

from __future__ import annotations

import re

import pytest
from scaffold_script import PROBLEM, scripted_llm

from qednano.llm.client import attempt_scope
from qednano.scaffolds.calls import attempt_rng
from qednano.scaffolds.tournament import knockout, parse_verdict


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Proof 2 has a gap.\n<verdict>1</verdict>", "1"),
        ("<verdict>1</verdict> wait, no. <verdict> 2 </verdict>", "2"),
        ("<VERDICT>tie</VERDICT>", "tie"),
        ("My verdict: proof 2 is better", "2"),
        ("Final verdict: 1.", "1"),
        ("verdict: 1 or 2, hard to say", "tie"),
        ("both are fine", "tie"),
        ("Proof 1 uses 2 lemmas", "tie"),
    ],
)
def test_parse_verdict(text: str, verdict: str) -> None:
    assert parse_verdict(text) == verdict


def entrants(messages: list[dict]) -> tuple[int, int]:
    a, b = re.findall(r"proof-(\d+)", messages[-1]["content"])
    return int(a), int(b)


def prefer_higher(kind: str, messages: list[dict]) -> str:
    a, b = entrants(messages)
    return f"<verdict>{1 if a > b else 2}</verdict>"


async def play(proofs: list[str], respond, attempt: str = "p/0", seed: int = 0, budget: int | None = None):
    llm, engine = scripted_llm(respond)
    with attempt_scope(attempt, budget) as scope:
        bracket = await knockout(PROBLEM, proofs, llm, attempt_rng(seed, "t"))
    return bracket, engine, scope.completions


async def test_bracket_with_byes_finds_the_best() -> None:
    proofs = [f"proof-{i}" for i in range(5)]
    bracket, engine, transcript = await play(proofs, prefer_higher)
    assert bracket.winner == 4 and bracket.complete
    # 5 entrants: 2 matches + bye, then 1 match + bye, then the final: 4 matches, 2 byes.
    assert [m.round for m in bracket.matches] == [1, 1, 2, 3]
    assert [r for r, _ in bracket.byes] == [1, 2]
    assert len(engine.requests) == 4
    assert sorted(c.step for c in transcript) == [
        "tournament/r1.m0",
        "tournament/r1.m1",
        "tournament/r2.m0",
        "tournament/r3.m0",
    ]
    for m in bracket.matches:
        assert m.winner == max(m.first, m.second) and m.verdict in ("1", "2")
    # Every entrant but the winner loses exactly once.
    losers = sorted({m.first, m.second} - {m.winner} for m in bracket.matches)
    assert sorted(x for s in losers for x in s) == [0, 1, 2, 3]


async def test_bracket_is_seeded_by_recipe_seed_and_attempt() -> None:
    proofs = [f"proof-{i}" for i in range(8)]
    first, _, _ = await play(proofs, prefer_higher)
    again, _, _ = await play(proofs, prefer_higher)
    assert [(m.first, m.second) for m in first.matches] == [(m.first, m.second) for m in again.matches]
    draws = set()
    for attempt in ("p/1", "p/2", "p/3", "q/0"):
        other, _, _ = await play(proofs, prefer_higher, attempt=attempt)
        draws.add(tuple((m.first, m.second) for m in other.matches if m.round == 1))
    draws.add(tuple((m.first, m.second) for m in first.matches if m.round == 1))
    assert len(draws) > 1


async def test_ties_and_unreadable_verdicts_use_the_seeded_coin() -> None:
    proofs = [f"proof-{i}" for i in range(8)]
    winners = set()
    for seed in range(6):
        a, _, _ = await play(proofs, lambda k, m: "I cannot decide.", seed=seed)
        b, _, _ = await play(proofs, lambda k, m: "I cannot decide.", seed=seed)
        assert a.winner == b.winner
        assert all(m.verdict == "tie" for m in a.matches)
        assert all(m.winner in (m.first, m.second) for m in a.matches)
        winners.add(a.winner)
    assert len(winners) > 1


async def test_single_proof_needs_no_call() -> None:
    bracket, engine, _ = await play(["proof-0"], prefer_higher)
    assert bracket.winner == 0 and bracket.matches == [] and engine.requests == []


async def test_budget_stops_the_tournament_with_a_survivor() -> None:
    proofs = [f"proof-{i}" for i in range(8)]
    # The first round's four matches are sent before any finishes; then the budget is spent.
    bracket, engine, _ = await play(proofs, prefer_higher, budget=1)
    assert not bracket.complete
    assert len(engine.requests) == 4
    first_round = [m for m in bracket.matches if m.round == 1]
    assert bracket.winner in {m.winner for m in first_round}
