"""`reasoning_cache`: iterative solve-then-summarise decoding (RC; Wu et al. 2026).

QED-Nano, section 4.2 and appendix B: the model "generates a partial trace, summarizes its
progress into a compact textual state representation, and conditions the next rollout on
both the original problem and this summary". Three turns gave the best trade-off at test
time (appendix B, Table 6); the paper's Table 2 row "Reasoning Cache" is this scaffold.

Per attempt, for turn t = 1..T:

1. `solve/t` (policy): the problem plus the current summary (none on turn 1);
2. unless t = T, `summarize/t` (summarizer role): the problem, the existing summary and
   the latest candidate (its reasoning, or its final text, per `summarize`) -> the new
   summary, which replaces the old one.

2T - 1 calls. The proof is the final text of the last turn, as in the original code, even
when that turn was cut off (its final text may then be empty): there is no selection across
turns, and `Attempt.truncated` shows the cut. With a benchmark `task` (AnswerBench's boxed
answer), every turn and summary poses the problem through it.

Context window: the summary call embeds the whole latest reasoning. When that does not fit
the summarizer's `context_length` (with `summary_tokens` of room, else `min_output_tokens`),
the reasoning's start is cut and its end kept (where the latest progress is), marked in the
prompt and noted on the call's Completion (`notes`).

Fallbacks: an empty summary keeps the previous summary. When the attempt's token budget is
spent, the loop stops and returns the final text of the latest turn.

`solve_prompt` and `summary_prompt` are shared with reasoning-cache RL (`train/rc.py`),
so training and evaluation see the same prompts and the same empty-summary text.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field

from qednano.config import Strict
from qednano.llm.client import Models
from qednano.llm.types import BudgetExhausted
from qednano.prompts import NO_SUMMARY, render, template
from qednano.records import Problem
from qednano.scaffolds.calls import fit_text, posed, user

log = logging.getLogger(__name__)


def solve_prompt(statement: str, summary: str, prompt: str = "rc_solve") -> str:
    """The solve message for one turn; an empty summary renders as `NO_SUMMARY`."""
    return render(template(prompt), problem=statement, summary=summary or NO_SUMMARY)


def summary_prompt(statement: str, summary: str, candidate: str, prompt: str = "rc_summarize") -> str:
    """The summarise message: problem, existing summary, latest candidate."""
    return render(template(prompt), problem=statement, summary=summary or NO_SUMMARY, candidate=candidate)


class ReasoningCache(Strict):
    """Solve, summarise, solve again conditioned on the summary; `turns` solves in all."""

    name: Literal["reasoning_cache"] = "reasoning_cache"
    turns: int = Field(3, ge=1)
    """Solve calls (T); T - 1 summaries. QED-Nano evaluation: 3."""
    summary_tokens: int | None = Field(None, ge=1)
    """Most output tokens per summary (`max_tokens`); None: the summarizer's default. RC training: 2048."""
    summarize: Literal["reasoning", "text"] = "reasoning"
    """What of the latest turn is summarised: its reasoning (the final text when it has no
    reasoning), as in the original code, or only its final text."""
    solve_template: str = "rc_solve"
    """Template of the solve message (`problem`, `summary`)."""
    summary_template: str = "rc_summarize"
    """Template of the summarise message (`problem`, `summary`, `candidate`)."""
    task: str | None = None
    """The benchmark's task template (`{{problem}}`, e.g. `answer`) the problem is posed through; None: bare."""

    async def run(self, problem: Problem, models: Models) -> str:
        statement = posed(problem.statement, self.task)
        summary = ""
        proof = ""
        try:
            for turn in range(1, self.turns + 1):
                message = solve_prompt(statement, summary, self.solve_template)
                solved = await models.policy.complete(user(message), step=f"solve/{turn}")
                proof = solved.text  # the latest turn is the answer, cut off or not
                if turn == self.turns:
                    break
                latest = solved.text if self.summarize == "text" else (solved.reasoning or solved.text)
                params = {"max_tokens": self.summary_tokens} if self.summary_tokens else {}

                def build(candidate: str, summary: str = summary) -> list[dict[str, str]]:
                    return user(summary_prompt(statement, summary, candidate, self.summary_template))

                latest, notes = fit_text(models.summarizer, build, latest, "latest reasoning", self.summary_tokens)
                summarized = await models.summarizer.complete(
                    build(latest), step=f"summarize/{turn}", notes=notes, **params
                )
                summary = summarized.text or summary
        except BudgetExhausted:
            log.info("reasoning_cache: token budget spent; returning the latest turn's text")
        return proof
