"""RSA and DSM against scripted models: aggregation sets, rounds, refinement, early stop, selection."""

from __future__ import annotations

import itertools
import re
from collections import Counter

import pytest
from scaffold_script import run_scaffold, scripted_llm, steps

from qednano.llm.client import Models
from qednano.records import Completion
from qednano.scaffolds.dsm import DSM, extract_proof
from qednano.scaffolds.dsm import parse_score as dsm_score
from qednano.scaffolds.rsa import RSA

# ---------------------------------------------------------------------------- RSA


def rsa_respond():
    ids = itertools.count()

    def respond(kind: str, messages: list[dict]) -> str:
        text = messages[-1]["content"]
        if kind == "tournament":
            a, b = (int(x) for x in re.findall(r"member-(\d+)", text))
            return f"<verdict>{1 if a > b else 2}</verdict>"
        assert kind in ("solve", "aggregate", "rsa_refine")
        return f"member-{next(ids)}"

    return respond


def population_sets(transcript: list[Completion]) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """(round, member) -> the (round - 1, member) inputs it was shown, read from the prompts."""
    where = {}
    for c in transcript:
        if c.step.startswith("solve/"):
            where[c.text] = (0, int(c.step.split("/")[1]))
        elif c.step.startswith("aggregate/"):
            t, s = c.step.removeprefix("aggregate/r").split(".")
            where[c.text] = (int(t), int(s))
    sets = {}
    for c in transcript:
        if c.step.startswith("aggregate/"):
            shown = re.findall(r"member-\d+", c.messages[0]["content"])
            sets[where[c.text]] = [where[x] for x in shown]
    return sets


async def test_rsa_rounds_sets_and_tournament() -> None:
    llm, engine = scripted_llm(rsa_respond())
    proof, transcript = await run_scaffold(RSA(), Models(llm))
    assert len(transcript) == 8 + 3 * 8 + 7
    expected = {f"solve/{s}" for s in range(8)} | {f"aggregate/r{t}.{s}" for t in (1, 2, 3) for s in range(8)}
    assert {s for s in steps(transcript) if not s.startswith("tournament/")} == expected
    sets = population_sets(transcript)
    for t in (1, 2, 3):
        uses = Counter()
        for s in range(8):
            inputs = sets[(t, s)]
            assert len(set(inputs)) == 3 and all(r == t - 1 for r, _ in inputs)
            uses.update(inputs)
        assert set(uses.values()) == {3} and len(uses) == 8  # balanced: every member used K times
    finals = {c.text for c in transcript if c.step.startswith("aggregate/r3.")}
    assert proof in finals and proof == max(finals, key=lambda x: int(x.split("-")[1]))
    assert engine.kinds.count("tournament") == 7


async def test_rsa_is_reproducible_per_attempt() -> None:
    runs = []
    for attempt in ("p/0", "p/0", "p/1"):
        llm, _ = scripted_llm(rsa_respond())
        proof, transcript = await run_scaffold(RSA(), Models(llm), attempt_id=attempt)
        bracket = [(c.step, c.messages[0]["content"]) for c in transcript if c.step.startswith("tournament/")]
        runs.append((population_sets(transcript), sorted(bracket), proof))
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0]


async def test_rsa_independent_sets_refine_prompt_and_random_select() -> None:
    llm, engine = scripted_llm(rsa_respond())
    proof, transcript = await run_scaffold(RSA(population=6, k=4, rounds=2, sets="independent"), Models(llm))
    for inputs in population_sets(transcript).values():
        assert len(set(inputs)) == 4
    assert len(transcript) == 6 + 12 + 5

    llm, engine = scripted_llm(rsa_respond())
    proof, transcript = await run_scaffold(RSA(population=3, k=1, rounds=1, select="random"), Models(llm))
    assert engine.kinds.count("rsa_refine") == 3 and "tournament" not in engine.kinds
    assert proof in {c.text for c in transcript if c.step.startswith("aggregate/")}


def test_rsa_rejects_k_above_population() -> None:
    with pytest.raises(ValueError, match="k"):
        RSA(population=2, k=3)


# ---------------------------------------------------------------------------- DSM


def test_dsm_parsers() -> None:
    assert extract_proof("think\n## Solution\nthe proof\n## Self Evaluation\nfine \\boxed{1}") == "the proof"
    assert extract_proof("### solution:\nP\n\n# self-evaluation\nx") == "P"
    assert extract_proof("no headings at all") == "no headings at all"
    assert extract_proof("body\n## Self Evaluation\nmeh") == "body"
    assert dsm_score("\\boxed{0.5} ... final: \\boxed{1}") == 1.0
    assert dsm_score("\\boxed{0.7}") == 0.0 and dsm_score("") == 0.0


def dsm_respond(scores: dict[int, list[float]], default: float = 0.5):
    """Proof n (in order of generation) gets scores[n][c] at its c-th verification."""
    proofs = itertools.count()
    seen: Counter[int] = Counter()

    def respond(kind: str, messages: list[dict]) -> str:
        text = messages[-1]["content"]
        if kind in ("dsm_generate", "dsm_refine"):
            n = next(proofs)
            return f"thinking\n## Solution\nproof-{n}\n## Self Evaluation\nall good \\boxed{{1}}"
        assert kind == "dsm_verify"
        n = int(re.search(r"<<<BEGIN PROOF \w+>>>\nproof-(\d+)", text).group(1))
        c = seen[n]
        seen[n] += 1
        score = scores.get(n, [default] * 4)[c]
        return f"critique of proof-{n} #{c}: score {score}. \\boxed{{{score:g}}}"

    return respond


async def test_dsm_refines_top_proofs_with_their_worst_critiques() -> None:
    scores = {0: [1, 0, 0.5, 1], 1: [0, 0, 0, 0], 2: [1, 1, 0.5, 1], 3: [0.5, 0.5, 0.5, 0.5]}
    llm, engine = scripted_llm(dsm_respond(scores, default=0.5))
    proof, transcript = await run_scaffold(DSM(refine_top=2), Models(llm))
    assert len(transcript) == 4 + 16 + 2 * (2 + 8)
    names = steps(transcript)
    assert {f"refine/{t}.{j}" for t in (1, 2) for j in (0, 1)} <= set(names)
    assert {f"verify/{i}.{j}" for i in range(8) for j in range(4)} == {n for n in names if n.startswith("verify/")}
    refine = [
        r["messages"][0]["content"]
        for r in engine.requests
        if "## Candidate Solution to Refine" in r["messages"][0]["content"]
    ]
    # Iteration 1: the two best means are proof-2 (0.875) and proof-0 (0.625), in that order.
    assert "### Candidate proof\n\nproof-2" in refine[0] and "### Candidate proof\n\nproof-0" in refine[1]
    # Each shows its two lowest-scored critiques: proof-0's #1 (0) and #2 (0.5), not #0 or #3.
    assert "proof-0 #1" in refine[1] and "proof-0 #2" in refine[1]
    assert "proof-0 #0" not in refine[1] and "proof-0 #3" not in refine[1]
    assert refine[0].count("### Verification") == 2
    # Refined proofs 4..7 all score 0.5: proof-2 keeps the best mean.
    assert proof == "proof-2"


async def test_dsm_stops_early_when_a_proof_passes_every_verification() -> None:
    llm, _ = scripted_llm(dsm_respond({1: [1, 1, 1, 1]}, default=0.5))
    proof, transcript = await run_scaffold(DSM(), Models(llm))
    assert proof == "proof-1" and len(transcript) == 4 + 16
    assert not any(s.startswith("refine/") for s in steps(transcript))


async def test_dsm_empty_proof_is_not_verified_and_verifier_role() -> None:
    def respond(kind: str, messages: list[dict]) -> str:
        if kind == "dsm_generate":
            return "## Solution\n\n## Self Evaluation\nI could not finish."
        return "unreadable"

    policy, pe = scripted_llm(respond)
    verifier, ve = scripted_llm(respond)
    proof, _ = await run_scaffold(DSM(proofs=2, iterations=0), Models(policy, verifier=verifier))
    assert proof == "" and pe.kinds == ["dsm_generate"] * 2 and ve.requests == []

    policy, pe = scripted_llm(dsm_respond({}))
    verifier, ve = scripted_llm(dsm_respond({}))
    await run_scaffold(
        DSM(proofs=2, verifications=3, refine_top=1, critiques=1, iterations=1), Models(policy, verifier=verifier)
    )
    assert pe.kinds == ["dsm_generate"] * 2 + ["dsm_refine"]
    assert ve.kinds == ["dsm_verify"] * 9


def test_dsm_rejects_more_critiques_than_verifications() -> None:
    with pytest.raises(ValueError, match="critiques"):
        DSM(verifications=2, critiques=3)
