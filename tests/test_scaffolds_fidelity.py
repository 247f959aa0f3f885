"""Scaffold fidelity to the published methods (issue 10, items 2-8): the benchmark's task instruction
in every call that writes a candidate, Reasoning Cache's last turn, DSM's truncation, Self-Check's
last correction (in test_scaffolds.py), RSA's fallback, per-call seeds, eval roles and the budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from scaffold_script import PROBLEM, run_scaffold, scripted_llm, steps

from qednano import config as cfg
from qednano.config import ConfigError
from qednano.eval.cells import EvalRecipe, open_cell, plan, with_settings
from qednano.llm.client import Models, attempt_scope, call_seed
from qednano.llm.types import Reply
from qednano.records import Attempt
from qednano.report.build import Markdown
from qednano.scaffolds.direct import Direct
from qednano.scaffolds.dsm import DSM
from qednano.scaffolds.nomos import Nomos
from qednano.scaffolds.reasoning_cache import ReasoningCache
from qednano.scaffolds.rsa import RSA
from qednano.scaffolds.self_check import SelfCheck

INSTRUCTION = "give the final answer inside"
"""A phrase of the `answer` template: IMO-AnswerBench's boxed-answer instruction."""
WRITES_A_CANDIDATE = {
    "solve",
    "rc_solve",
    "aggregate",
    "rsa_refine",
    "dsm_generate",
    "dsm_refine",
    "sc_solve",
    "sc_improve",
    "sc_correct",
    "consolidate",
}


def answer_settings() -> dict[str, Any]:
    path = cfg.find_recipe(cfg.PACKAGE_RECIPES / "benchmarks" / "imo-answerbench.yaml")
    return dict(cfg.read_yaml(path)[0]["scaffold_settings"])


def generic(kind: str, messages: list[dict[str, Any]]) -> str:
    return {
        "score": "fine \\boxed{5}",
        "dsm_verify": "a gap \\boxed{0}",
        "sc_verify": "**Summary** step 2 is wrong.",
        "sc_classify": "no",
        "consolidate": "<keep>[1, 2]</keep>",
        "tournament": "<verdict>1</verdict>",
        "rc_summarize": "a summary",
    }.get(kind, "so the answer is \\boxed{3}")


# ---------------------------------------------------------------------------- item 2


async def test_every_call_that_writes_a_candidate_carries_the_benchmarks_instruction() -> None:
    settings = answer_settings()
    scaffolds = [
        Direct(),
        ReasoningCache(turns=2),
        RSA(population=2, k=2, rounds=1),
        RSA(population=2, k=1, rounds=1),
        Nomos(samples=2, keep=2, perfect_target=2),
        DSM(proofs=1, verifications=1, refine_top=1, critiques=1, iterations=1),
        SelfCheck(passes=1, failures=1, max_iterations=1),
    ]
    seen: set[str] = set()
    for scaffold in scaffolds:
        llm, engine = scripted_llm(generic)
        await run_scaffold(with_settings(scaffold, settings), Models(llm))
        for kind, request in zip(engine.kinds, engine.requests, strict=True):
            if kind in WRITES_A_CANDIDATE:
                seen.add(kind)
                assert INSTRUCTION in json.dumps(request["messages"]), (scaffold.name, kind)
    assert seen == WRITES_A_CANDIDATE  # every kind of candidate-writing call was checked


async def test_proof_benchmarks_pose_the_bare_statement() -> None:
    llm, engine = scripted_llm(generic)
    await run_scaffold(RSA(population=2, k=2, rounds=1), Models(llm))
    assert not any(INSTRUCTION in json.dumps(r["messages"]) for r in engine.requests)


# ---------------------------------------------------------------------------- item 3


def attempt_of(proof: str, transcript: list[Any]) -> Attempt:
    return Attempt(id="p/0", problem_id="p", sample=0, scaffold="s", proof=proof, transcript=transcript)


async def test_rc_the_last_turn_is_the_answer_even_when_cut_off() -> None:
    turns = iter(range(1, 4))

    def respond(kind: str, messages: list[dict[str, Any]]) -> Reply | str:
        if kind == "rc_solve":
            t = next(turns)
            return Reply(f"final-{t}", "thinking", 10, 10, "stop") if t < 3 else Reply("", "cut", 10, 10, "length")
        return "a summary"

    llm, _ = scripted_llm(respond)
    proof, transcript = await run_scaffold(ReasoningCache(turns=3), Models(llm))
    assert proof == "" and attempt_of(proof, transcript).truncated  # not turn 2's text, and the cut shows

    partial = iter([Reply("final-1", "", 1, 1, "stop"), Reply("half a proof", "", 1, 1, "length")])
    llm, _ = scripted_llm(lambda k, m: next(partial) if k == "rc_solve" else "s")
    proof, transcript = await run_scaffold(ReasoningCache(turns=2), Models(llm))
    assert proof == "half a proof" and attempt_of(proof, transcript).truncated


async def test_dsm_truncated_fires_for_a_cut_off_proof() -> None:
    def respond(kind: str, messages: list[dict[str, Any]]) -> Reply | str:
        if kind == "dsm_generate":
            return Reply("## Solution\nA long argument that was cut", "", 10, 10, "length")
        return "a gap \\boxed{0}"

    llm, _ = scripted_llm(respond)
    proof, transcript = await run_scaffold(DSM(proofs=1, verifications=1, critiques=1, iterations=0), Models(llm))
    assert proof == "A long argument that was cut" and attempt_of(proof, transcript).truncated


# ---------------------------------------------------------------------------- item 5


def one_empty_member(otherwise: str) -> Any:
    """Initial solves: the first has no final text, the second has; other calls get `otherwise`."""
    solves = iter(["", "the only proof"])
    return lambda kind, messages: next(solves) if kind == "solve" else otherwise


@pytest.mark.parametrize("select", ["random", "tournament"])
async def test_rsa_never_returns_an_empty_member_while_another_has_text(select: str) -> None:
    for seed in range(8):
        llm, _ = scripted_llm(one_empty_member("<verdict>tie</verdict>"))
        proof, _ = await run_scaffold(RSA(population=2, k=1, rounds=0, select=select, seed=seed), Models(llm))
        assert proof == "the only proof", seed


async def test_rsa_budget_fallback_skips_empty_members() -> None:
    llm, _ = scripted_llm(one_empty_member("aggregated"))
    proof, transcript = await run_scaffold(RSA(population=2, k=1, rounds=1), Models(llm), budget=1)
    assert steps(transcript) == ["solve/0", "solve/1"] and proof == "the only proof"


# ---------------------------------------------------------------------------- item 6


async def test_parallel_identical_requests_get_seeds_of_their_own() -> None:
    async def seeds() -> list[int]:
        llm, engine = scripted_llm(generic, seed=1234)
        await run_scaffold(RSA(population=4, k=2, rounds=1, select="random"), Models(llm))
        return sorted(r["seed"] for r in engine.requests)

    first = await seeds()
    assert len(set(first)) == len(first) == 8  # four identical solves and four aggregations
    assert first == await seeds()  # the same on a re-run (so calls replay, and samples reproduce)
    assert call_seed(1234, "p/0:solve/0", 0) in first
    assert call_seed(1234, "p/0:solve/0", 0) != call_seed(1235, "p/0:solve/0", 0)


async def test_an_explicit_seed_and_no_seed_are_sent_as_given() -> None:
    llm, engine = scripted_llm(generic)
    ask = [{"role": "user", "content": "Write a complete and rigorous proof for the following problem. x"}]
    with attempt_scope("p/0"):
        await llm.complete(ask, step="a")
        await llm.complete(ask, step="b", seed=7)
    assert "seed" not in engine.requests[0] and engine.requests[1]["seed"] == 7


# ---------------------------------------------------------------------------- item 7


def write_eval(tmp_path: Path, roles: dict[str, Any]) -> Path:
    (tmp_path / "p.jsonl").write_text(PROBLEM.model_dump_json() + "\n")
    bench = {"problems": {"path": str(tmp_path / "p.jsonl")}, "judge": {"kind": "answer"}}
    recipe = {
        "run_dir": str(tmp_path / "runs"),
        "benchmarks": {"b": {**bench, "models": {"judge": {"model": "judge-model"}}}},
        "models": {"qed": {"model": "policy-model"}, "other": {"model": "other-model"}},
        "scaffolds": {"rc": {"name": "reasoning_cache"}},
        "roles": roles,
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_an_eval_recipe_sets_summarizer_and_verifier_per_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_API_KEY", "test-key")
    path = write_eval(tmp_path, {"qed": {"summarizer": "gpt-oss-20b", "verifier": {"model": "verifier-model"}}})
    recipe = cfg.load(path, [], EvalRecipe)
    cells = {c.model_label: c for c in plan(recipe)}
    endpoints: dict[str, Any] = {}
    problems = recipe.benchmarks["b"].problems.load()
    qed = open_cell(cells["qed"], recipe, problems, endpoints)
    other = open_cell(cells["other"], recipe, problems, endpoints)
    roles = qed.models
    assert roles.policy.config.model == "policy-model"
    assert roles.summarizer.config.model == "openai/gpt-oss-20b"  # a shipped model recipe, by name
    assert roles.verifier.config.model == "verifier-model"
    assert other.models.summarizer is other.models.policy and other.models.verifier is other.models.policy
    pinned = cells["qed"].recipe(recipe)["models"]
    assert (
        pinned["summarizer"]["model"] == "openai/gpt-oss-20b"
        and "summarizer" not in cells["other"].recipe(recipe)["models"]
    )
    qed.store.close()
    other.store.close()


def test_roles_for_an_unknown_model_label_are_refused(tmp_path: Path) -> None:
    path = write_eval(tmp_path, {"nope": {"summarizer": {"model": "s"}}})
    with pytest.raises(ConfigError, match="roles: \\['nope'\\]"):
        plan(cfg.load(path, [], EvalRecipe))


# ---------------------------------------------------------------------------- item 8


async def test_the_budget_counts_what_the_recipe_says() -> None:
    def respond(kind: str, messages: list[dict[str, Any]]) -> Reply:
        return Reply("proof", "", 1000, 10, "stop")  # long prompts, short answers

    sent = {}
    for counts in ("total", "output"):
        llm, engine = scripted_llm(respond)
        with attempt_scope("p/0", 500, counts):
            await ReasoningCache(turns=3).run(PROBLEM, Models(llm))
        sent[counts] = len(engine.requests)
    assert sent == {"total": 1, "output": 5}
    with pytest.raises(ValueError, match="budget_counts"), attempt_scope("p/0", 5, "input"):
        pass


def test_table2_header_says_the_tokens_are_output_tokens() -> None:
    text = Markdown([], []).render("t")
    assert "Output tokens (reasoning included)" in text and "budget_counts: output" in text
    cols = Markdown([], []).scaffolds()
    assert cols == []  # no benchmarks, no tables; the column names are checked in test_report
