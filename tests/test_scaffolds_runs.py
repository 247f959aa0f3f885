"""Scaffolds inside the pipeline: token budgets, token and cost totals, crash and resume from the call cache."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from scaffold_script import PROBLEM, scripted_llm

from qednano.config import PACKAGE_RECIPES, load
from qednano.eval.pipeline import generate
from qednano.eval.runs import RunRecipe
from qednano.llm.client import Models
from qednano.records import Attempt
from qednano.scaffolds.direct import Direct
from qednano.scaffolds.dsm import DSM, extract_proof
from qednano.scaffolds.nomos import Nomos
from qednano.scaffolds.reasoning_cache import ReasoningCache
from qednano.scaffolds.rsa import RSA
from qednano.scaffolds.self_check import SelfCheck
from qednano.store import RunDir


def respond(kind: str, messages: list[dict]) -> str:
    """Replies that depend only on the request, so a resumed run sees the same texts."""
    tag = hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:8]
    if kind == "tournament":
        first, second = (m for m in messages[-1]["content"].split("### Proof ")[1:3])
        return f"<verdict>{1 if first[3:] > second[3:] else 2}</verdict>"
    if kind in ("dsm_generate", "dsm_refine"):
        return f"## Solution\nproof-{tag}\n## Self Evaluation\n\\boxed{{1}}"
    return {
        "dsm_verify": f"critique {tag} \\boxed{{{0.5 if tag < '8' else 1}}}",
        "score": f"\\boxed{{{int(tag, 16) % 8}}}",
        "consolidate": "<keep>[1, 2, 3]</keep>",
        "sc_verify": f"Summary: gap {tag}\nDetailed Verification: ...",
        "sc_classify": "yes" if tag < "8" else "no",
        "rc_summarize": f"summary-{tag}",
    }.get(kind, f"text-{tag}")


SCAFFOLDS = {
    "direct": (Direct(), 1),
    "reasoning_cache": (ReasoningCache(), 5),
    "self_check": (SelfCheck(passes=2, failures=2, max_iterations=4), None),
    "nomos": (Nomos(samples=6, keep=4, perfect_target=3), None),
    "rsa": (RSA(), 39),
    "dsm": (DSM(), None),
}
FIRST_STAGE = {"direct": 1, "reasoning_cache": 1, "self_check": 1, "nomos": 6, "rsa": 8, "dsm": 4}


async def run(tmp_path: Path, scaffold, budget: int | None = None, **llm):
    store = RunDir(tmp_path / "run")
    policy, engine = scripted_llm(respond, cache=store.cache, **llm)
    outcome = await generate([PROBLEM], scaffold, Models(policy), store, samples=2, token_budget=budget)
    return outcome, store.read("attempts.jsonl", Attempt), engine, policy


@pytest.mark.parametrize("name", SCAFFOLDS)
async def test_attempt_records_every_call_with_token_and_cost_totals(tmp_path: Path, name: str) -> None:
    scaffold, calls = SCAFFOLDS[name]
    outcome, attempts, engine, _ = await run(tmp_path, scaffold, price_input=2.0, price_output=10.0)
    assert outcome.done == 2 and not outcome.failed
    assert sum(len(a.transcript) for a in attempts) == len(engine.requests)
    if calls is not None:
        assert all(len(a.transcript) == calls for a in attempts)
    assert sum(a.input_tokens for a in attempts) == sum(r.input_tokens for r in engine.replies)
    assert sum(a.output_tokens for a in attempts) == sum(r.output_tokens for r in engine.replies)
    expected_cost = sum(2.0 * r.input_tokens + 10.0 * r.output_tokens for r in engine.replies) / 1e6
    assert sum(a.cost for a in attempts) == pytest.approx(expected_cost)
    assert all(a.scaffold == name and a.proof for a in attempts)
    for a in attempts:
        assert len({c.step for c in a.transcript}) == len(a.transcript)  # every step name is distinct


@pytest.mark.parametrize("name", [n for n in SCAFFOLDS if n != "direct"])
async def test_token_budget_stops_cleanly_with_the_best_proof_so_far(tmp_path: Path, name: str) -> None:
    scaffold, _ = SCAFFOLDS[name]
    outcome, attempts, engine, _ = await run(tmp_path, scaffold, budget=1)
    # The first stage is sent before any token is counted; nothing after it.
    assert outcome.done == 2 and not outcome.failed
    assert len(engine.requests) == 2 * FIRST_STAGE[name]
    for a in attempts:
        assert a.proof and a.proof in {extract_proof(c.text) for c in a.transcript}


async def test_rsa_resumes_from_the_call_cache_without_resending(tmp_path: Path) -> None:
    _, clean, reference, _ = await run(tmp_path / "clean", RSA())

    store = RunDir(tmp_path / "crashed")
    policy, first = scripted_llm(respond, cache=store.cache, fail_after=50)
    outcome = await generate([PROBLEM], RSA(), Models(policy), store, samples=2)
    assert len(outcome.failed) >= 1 and outcome.done + len(outcome.failed) == 2
    written = store.read("attempts.jsonl", Attempt)
    assert len(first.requests) == 50 and policy.stats.sent == 50

    again, second = scripted_llm(respond, cache=store.cache)
    outcome = await generate([PROBLEM], RSA(), Models(again), store, samples=2)
    assert not outcome.failed and outcome.skipped == len(written)
    resumed = store.read("attempts.jsonl", Attempt)
    # Every finished call replayed, only the rest was sent: 2 x 39 calls in all.
    finished_in_unwritten = 50 - sum(len(a.transcript) for a in written)
    assert again.stats.cached == finished_in_unwritten
    assert len(second.requests) == 78 - 50
    sent = Counter(json.dumps(r["messages"]) for r in first.requests + second.requests)
    assert sent == Counter(json.dumps(r["messages"]) for r in reference.requests)
    assert sorted(a.proof for a in resumed) == sorted(a.proof for a in clean)


RECIPES = PACKAGE_RECIPES / "scaffolds"
PAPER_SETTINGS = {
    "rsa": {"name": "rsa", "population": 8, "k": 3, "rounds": 3},
    "rsa_16_4_10": {"name": "rsa", "population": 16, "k": 4, "rounds": 9},
    "dsm": {"name": "dsm", "proofs": 4, "verifications": 4, "refine_top": 4, "critiques": 2, "iterations": 2},
    "self_check": {"name": "self_check", "passes": 5, "failures": 10, "max_iterations": 30},
    "self_check_cheap": {"name": "self_check", "passes": 2, "failures": 4, "max_iterations": 10},
    "nomos": {"name": "nomos", "samples": 16, "keep": 12, "perfect_target": 8},
    "reasoning_cache": {"name": "reasoning_cache", "turns": 3},
    "direct": {"name": "direct"},
}


@pytest.mark.parametrize("stem", PAPER_SETTINGS)
def test_scaffold_presets_load_by_name_with_the_paper_settings(stem: str, tmp_path: Path) -> None:
    recipe = tmp_path / "recipes" / "run.yaml"
    recipe.parent.mkdir()
    (recipe.parent / "scaffolds").symlink_to(RECIPES)
    recipe.write_text(f"run_dir: r\nproblems: {{path: p.jsonl}}\nmodels: {{}}\nscaffold: {stem}\n")
    settings = load(recipe, [], RunRecipe).scaffold.model_dump()
    assert {k: settings[k] for k in PAPER_SETTINGS[stem]} == PAPER_SETTINGS[stem]


def test_every_scaffold_preset_is_checked() -> None:
    assert {p.stem for p in RECIPES.glob("*.yaml")} == set(PAPER_SETTINGS)
