"""How scaffolds make their calls: messages, concurrent groups, the token budget, seeded RNGs.

Every scaffold (QED-Nano paper, section 5 and appendix B) is a short algorithm over `LLM`;
the pieces they all need live here so each algorithm reads as the paper describes it:

- `user()`: a one-message conversation;
- `gather()`: run independent calls concurrently inside the pipeline's one fan-out (no
  thread pools); every call settles before an error is raised, so no orphan call keeps
  running after a scaffold has returned;
- `BudgetExhausted` handling: LLM refuses to *send* a call once the attempt's token budget
  is spent (calls already in flight finish, so the budget is soft by at most one stage);
  scaffolds catch it and return their best proof so far;
- `attempt_rng()`: a `random.Random` seeded from the recipe seed, the attempt id and a
  purpose, through sha256 (never Python's salted `hash()`), so a re-run draws the same
  brackets and sets and replays its calls from the cache;
- `posed()`: the problem as every call that writes a candidate shows it: through the
  benchmark's task template (`task`, e.g. AnswerBench's boxed-answer instruction), so the
  instruction reaches aggregation, later turns, refinements and corrections too;
- `fit_text()`: an input cut from its start until the call fits the model's context window
  (`llm/context.py`), with a note for the Completion;
- `fenced()`: candidate text (or a grader's report on it) fenced as data for a self-check
  prompt (`grading/fence.py`); the fence is a function of the text, so a re-run sends the same
  prompt and replays it from the cache.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from qednano.grading.fence import Fenced, fence
from qednano.llm.client import LLM, current_scope
from qednano.llm.context import keep_end
from qednano.llm.types import BudgetExhausted
from qednano.prompts import render, template
from qednano.records import content_id

log = logging.getLogger(__name__)

T = TypeVar("T")


def user(text: str) -> list[dict[str, Any]]:
    """A conversation of one user message."""
    return [{"role": "user", "content": text}]


def posed(statement: str, task: str | None) -> str:
    """The problem through the benchmark's task template (`{{problem}}`); the bare statement when None."""
    return statement if task is None else render(template(task), problem=statement)


def fit_text(
    llm: LLM, build: Callable[[str], list[dict[str, Any]]], text: str, what: str, max_tokens: int | None = None
) -> tuple[str, list[str]]:
    """(`text`, no notes) when `build(text)` fits `llm`'s context window; else the longest end of it that fits.

    The note says how much was kept. When not even an empty `text` fits, the call is left to
    be refused by `LLM` (a `ContextLengthError`: the attempt fails and is retried next run).
    """
    if llm.fits(build(text), max_tokens):
        return text, []
    kept = keep_end(text, lambda t: llm.fits(build(t), max_tokens))
    note = f"context: kept the last {len(kept)} of {len(text)} characters of the {what}"
    log.warning("%s", note)
    return kept, [note]


async def gather(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Run `calls` concurrently and return their results in order.

    All calls settle before anything is raised. A real failure (any other exception) wins
    over `BudgetExhausted`, so an attempt whose call failed for good is retried by the next
    run rather than cut short.
    """
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        real = [e for e in errors if not isinstance(e, BudgetExhausted)]
        raise (real or errors)[0]
    return results  # type: ignore[return-value]


def attempt_rng(seed: int, purpose: str) -> random.Random:
    """A reproducible RNG for one attempt: sha256 of (seed, attempt id, purpose)."""
    scope = current_scope()
    attempt = scope.id if scope else ""
    return random.Random(int(content_id(seed, attempt, purpose, length=16), 16))


def fenced(text: str, problem_id: str, judge: str, what: str, *, report: bool = False) -> Fenced:
    """`text` fenced for a scaffold's verifier prompt; cut the fence from the reply with `Fenced.cut`.

    `report=True` fences a grader's report on a candidate: its sentences are kept (a report's
    own verdict reads like an instruction to the grader), markers and verdict-like tags it may
    have quoted are still neutralised. What was neutralised in a candidate is logged, since a
    scaffold has no Grade to flag.
    """
    f = fence(
        text,
        judge=judge,
        problem_id=problem_id,
        what=what,
        frame="report_fence" if report else "proof_fence",
        instructions=not report,
    )
    if f.findings and not report:
        log.warning("%s (%s): neutralised text aimed at the grader: %s", judge, what.lower(), "; ".join(f.findings))
    return f
