"""A scripted engine for scaffold tests: the real `LLM` class with replies chosen by a function.

`kind(messages)` names the scaffold prompt a request was built from (by a phrase of the
bundled template), so a test's `respond(kind, messages)` can answer each kind of call its
own way. Token counts are deterministic functions of the text, so totals can be checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from qednano.llm.cache import CallCache
from qednano.llm.client import LLM, Models, attempt_scope
from qednano.llm.types import LLMError, ModelConfig, Reply
from qednano.records import Completion, Problem

FINGERPRINTS = [
    ("tournament", "You are judging two candidate proofs"),
    ("rc_summarize", "Write a summary of the latest candidate"),
    ("rc_solve", "### SUMMARY OF PREVIOUS ATTEMPT"),
    ("sc_classify", "Answer with a single word: yes or no"),
    ("sc_verify", "### Solution ###"),
    ("sc_correct", "### Bug report"),
    ("sc_improve", "Review your solution carefully"),
    ("score", "Grade the submission below on the usual 0-7 scale"),
    ("consolidate", "Group the submissions by their final conclusion"),
    ("aggregate", "### Candidate proofs"),
    ("rsa_refine", "Check the candidate critically"),
    ("dsm_refine", "## Candidate Solution to Refine"),
    ("dsm_verify", "You are a strict olympiad grader"),
    ("dsm_generate", "## Self Evaluation"),
    ("solve", "Write a complete and rigorous proof for the following problem"),
]

PROBLEM = Problem(id="p", statement="Prove that 1 + 1 = 2.")

Respond = Callable[[str, list[dict[str, Any]]], "str | Reply"]


def kind(messages: list[dict[str, Any]]) -> str:
    """Which scaffold prompt built this request."""
    last = messages[-1]["content"]
    for name, phrase in FINGERPRINTS:
        if phrase in last:
            return name
    if messages[0]["role"] == "system" and len(messages) == 2:
        return "sc_solve"
    if "give the final answer inside" in last:  # the `answer` template (AnswerBench's first solve)
        return "solve"
    raise AssertionError(f"unknown request: {last[:200]!r}")


def tokens_in(messages: list[dict[str, Any]]) -> int:
    return sum(len(m["content"]) for m in messages) // 10 + 1


class ScriptedEngine:
    """`send()` records the request and answers with `respond(kind, messages)`."""

    def __init__(self, respond: Respond, *, fail_after: int | None = None) -> None:
        self.respond = respond
        self.fail_after = fail_after
        self.requests: list[dict[str, Any]] = []
        self.replies: list[Reply] = []

    @property
    def kinds(self) -> list[str]:
        return [kind(r["messages"]) for r in self.requests]

    async def send(self, request: dict[str, Any], timeout: float) -> Reply:
        if self.fail_after is not None and len(self.requests) >= self.fail_after:
            raise LLMError("scripted engine: down")
        self.requests.append(request)
        await asyncio.sleep(0)  # let concurrent calls interleave as they would on a server
        out = self.respond(kind(request["messages"]), request["messages"])
        reply = (
            out
            if isinstance(out, Reply)
            else Reply(out, None, tokens_in(request["messages"]), len(out) // 4 + 1, "stop")
        )
        self.replies.append(reply)
        return reply


def scripted_llm(
    respond: Respond,
    name: str = "scripted",
    *,
    fail_after: int | None = None,
    cache: CallCache | None = None,
    **config: Any,
) -> tuple[LLM, ScriptedEngine]:
    """The real LLM over a scripted engine (no retries, so a failure fails the call at once)."""
    e = ScriptedEngine(respond, fail_after=fail_after)
    settings = {"name": name, "model": name, "max_retries": 0, "concurrency": 64, **config}
    return LLM(ModelConfig(**settings), cache, engine=e), e


async def run_scaffold(
    scaffold: Any, models: Models, attempt_id: str = "p/0", budget: int | None = None
) -> tuple[str, list[Completion]]:
    """Run a scaffold in an attempt scope, as the pipeline does: (proof, transcript)."""
    with attempt_scope(attempt_id, budget) as scope:
        proof = await scaffold.run(PROBLEM, models)
    return proof, scope.completions


def steps(transcript: list[Completion]) -> list[str]:
    return [c.step for c in transcript]
