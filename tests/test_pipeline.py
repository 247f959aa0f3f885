"""`generate()` and `grade()` with the real LLM against the fake server, a real run directory and cache."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from qednano.eval.pipeline import generate, grade
from qednano.llm.client import LLM, Models
from qednano.llm.types import ModelConfig
from qednano.prompts import PromptError
from qednano.records import Attempt, Grade, Problem
from qednano.scaffolds.direct import Direct
from qednano.store import RunDir
from qednano.testing.fake_server import ErrorReply, FakeServer, ScriptedReply

PROBLEMS = [Problem(id=f"p{i}", statement=f"Prove statement number {i}.") for i in range(5)]


def statement_of(body: dict[str, Any]) -> str:
    return next(p.id for p in PROBLEMS if p.statement in body["messages"][-1]["content"])


def llm_for(server: FakeServer, store: RunDir, **config: Any) -> LLM:
    settings: dict[str, Any] = {"model": "m", "base_urls": [server.url], "backoff_s": 0.0, "max_retries": 1}
    return LLM(ModelConfig(**{**settings, **config}), store.cache)


class TwoSteps:
    """A scaffold that drafts, then polishes the draft: two dependent calls."""

    name = "two-steps"

    async def run(self, problem: Problem, models: Models) -> str:
        draft = await models.policy.complete([{"role": "user", "content": problem.statement}], step="draft")
        polished = await models.policy.complete(
            [{"role": "user", "content": f"Polish: {draft.text} ({problem.statement})"}], step="polish"
        )
        return polished.text


async def test_generate_fans_out_over_all_items_and_resumes(tmp_path: Path) -> None:
    store = RunDir(tmp_path / "run")
    with FakeServer(lambda body: ScriptedReply(content=f"proof of {statement_of(body)}", delay_s=0.02)) as server:
        llm = llm_for(server, store, concurrency=4)
        first = await generate(PROBLEMS, Direct(), Models(llm), store, samples=3)
        again = await generate(PROBLEMS, Direct(), Models(llm), store, samples=3)
        await llm.aclose()
    assert (first.total, first.done, first.skipped, first.failed) == (15, 15, 0, {})
    assert (again.done, again.skipped) == (0, 15)
    assert server.requests == 15
    assert server.peak_inflight == 4  # every item started at once; the LLM's concurrency is the bound
    attempts = store.read("attempts.jsonl", Attempt)
    assert sorted(a.id for a in attempts) == sorted(f"p{i}/{s}" for i in range(5) for s in range(3))
    assert all(a.proof == f"proof of {a.problem_id}" and a.transcript[0].step == "solve" for a in attempts)


async def test_failed_items_write_nothing_and_rerun_sends_only_unfinished_calls(tmp_path: Path) -> None:
    store = RunDir(tmp_path / "run")
    broken = {"on": True}

    def script(body: dict[str, Any]) -> ScriptedReply | ErrorReply:
        text = body["messages"][-1]["content"]
        if broken["on"] and text.startswith("Polish") and "number 2" in text:
            return ErrorReply(400, "polishing p2 is not allowed today")
        return ScriptedReply(content=f"text for {statement_of(body)}")

    with FakeServer(script) as server:
        llm = llm_for(server, store)
        first = await generate(PROBLEMS, TwoSteps(), Models(llm), store)
        assert set(first.failed) == {"p2/0"} and "not allowed today" in first.failed["p2/0"]
        assert "p2/0" not in {a.id for a in store.read("attempts.jsonl", Attempt)}
        sent_before = server.requests

        broken["on"] = False
        second = await generate(PROBLEMS, TwoSteps(), Models(llm_for(server, store)), store)
        await llm.aclose()
    assert (second.done, second.skipped, second.failed) == (1, 4, {})
    assert server.requests == sent_before + 1  # p2's draft replayed from the cache; only the polish was sent
    assert [b["messages"][-1]["content"] for b in server.bodies].count(PROBLEMS[2].statement) == 1
    p2 = next(a for a in store.read("attempts.jsonl", Attempt) if a.id == "p2/0")
    assert [c.cached for c in p2.transcript] == [True, False]


async def test_bad_input_inside_a_scaffold_surfaces_as_itself(tmp_path: Path) -> None:
    store = RunDir(tmp_path / "run")
    with FakeServer() as server:
        llm = llm_for(server, store)
        with pytest.raises(PromptError, match="not found"):
            await generate(PROBLEMS, Direct(prompt=str(tmp_path / "missing.md")), Models(llm), store)
        await llm.aclose()
    assert server.requests == 0


class WordJudge:
    """Gives 7 when the judge model says PASS, 0 on FAIL, and no grade (None) otherwise."""

    name = "word"

    async def grade(self, problem: Problem, attempt: Attempt, llm: LLM) -> Grade:
        reply = await llm.complete([{"role": "user", "content": f"Grade: {attempt.proof}"}], step="judge")
        points = {"PASS": 7.0, "FAIL": 0.0}.get(reply.text)
        return Grade(attempt_id=attempt.id, problem_id=problem.id, judge=self.name, points=points, transcript=[reply])


async def test_grade_writes_verdicts_keeps_ungraded_visible_and_resumes(tmp_path: Path) -> None:
    store = RunDir(tmp_path / "run")
    attempts = [
        Attempt(id=f"{p.id}/0", problem_id=p.id, sample=0, scaffold="direct", proof=verdict)
        for p, verdict in zip(PROBLEMS, ["PASS", "FAIL", "mumble", "PASS", "ERROR"], strict=True)
    ]

    def script(body: dict[str, Any]) -> ScriptedReply | ErrorReply:
        proof = body["messages"][-1]["content"].removeprefix("Grade: ")
        return ErrorReply(400, "judge refuses") if proof == "ERROR" else ScriptedReply(content=proof)

    with FakeServer(script) as server:
        llm = llm_for(server, store)
        first = await grade(PROBLEMS, attempts, WordJudge(), llm, store)
        again = await grade(PROBLEMS, attempts, WordJudge(), llm, store)
        await llm.aclose()
    grades = {g.attempt_id: g.points for g in store.read("grades/word.jsonl", Grade)}
    assert grades == {"p0/0": 7.0, "p1/0": 0.0, "p2/0": None, "p3/0": 7.0}  # no silent zero for p2
    assert set(first.failed) == {"p4/0"} and first.done == 4
    assert (again.skipped, again.done, set(again.failed)) == (4, 0, {"p4/0"})
    assert Counter(b["messages"][-1]["content"] for b in server.bodies)["Grade: ERROR"] == 2


async def test_progress_is_reported_for_every_item(tmp_path: Path) -> None:
    store = RunDir(tmp_path / "run")
    seen: list[tuple[int, int]] = []
    with FakeServer() as server:
        llm = llm_for(server, store)
        await generate(PROBLEMS[:3], Direct(), Models(llm), store, progress=lambda d, t: seen.append((d, t)))
        await generate(PROBLEMS, Direct(), Models(llm), store, progress=lambda d, t: seen.append((d, t)))
        await llm.aclose()
    assert seen == [(1, 3), (2, 3), (3, 3), (4, 5), (5, 5)]


def test_an_eval_grades_each_attempt_while_the_others_still_generate(tmp_path: Path) -> None:
    """The judge grades the fast attempts while the slow one still generates: grading streams."""
    import time

    from qednano.eval.cells import EvalRecipe
    from qednano.eval.run import run_eval

    slow_s = 1.0
    seen: dict[str, list[float]] = {"policy": [], "judge": [], "slow": []}

    def script(body: dict[str, Any]) -> ScriptedReply:
        now = time.monotonic()
        if body["model"] == "judge":
            seen["judge"].append(now)
            return ScriptedReply(content="Step by step it holds. <points>7</points>")
        slow = statement_of(body) == "p0"
        seen["slow" if slow else "policy"].append(now)
        return ScriptedReply(content="Proof: it holds.", delay_s=slow_s if slow else 0.0)

    data = tmp_path / "problems.jsonl"
    data.write_text("".join(p.model_dump_json() + "\n" for p in PROBLEMS))
    with FakeServer(script) as server:

        def model(name: str) -> dict[str, Any]:
            return {"model": name, "base_urls": [server.url], "max_retries": 0, "timeout_s": 30}

        recipe = EvalRecipe.model_validate(
            {
                "run_dir": str(tmp_path / "run"),
                "benchmarks": {
                    "b": {
                        "problems": {"source": "file", "path": str(data)},
                        "judge": {"kind": "proof", "style": "simple"},
                        "models": {"judge": model("judge")},
                    }
                },
                "models": {"m": model("policy")},
            }
        )
        outcome = run_eval(recipe)
    (cell,) = outcome.cells
    assert (cell.generated.done, cell.graded.done) == (5, 5) and not outcome.failed
    (slow,) = seen["slow"]
    graded_while_slow = [t for t in seen["judge"] if t < slow + slow_s]
    assert len(graded_while_slow) == 4  # every fast attempt was graded before the slow one was written
    assert max(seen["judge"]) > slow + slow_s  # and the slow one right after it
