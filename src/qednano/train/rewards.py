"""The RL reward: the project's own judge (the class that grades benchmarks) as a TRL reward function.

Reward = points / max points of the judge's grade of the text after the reasoning (paper
section 4.2; the original's reward pipeline). A completion that never closes its reasoning
gets the recipe's truncation reward without a judge call. A judge that gives no verdict
returns `None`: TRL leaves the row out of its group's mean and gives it advantage 0 (the
original trained on a 0 there). Every judge call goes through `LLM` (call cache under the
output folder, bounded retries, cost), all calls of a step at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from qednano.grading.judge import JudgeConfig
from qednano.llm.client import LLM, attempt_scope
from qednano.records import Attempt, Grade, Problem
from qednano.train.recipes import RewardSettings


def completion_text(completion: Any) -> str:
    """TRL's completion: a string, or a conversational list whose last message is the assistant's."""
    if isinstance(completion, str):
        return completion
    return str(completion[-1].get("content", "")) if completion else ""


class JudgeReward:
    """`async __call__(prompts, completions, problem_id, ...) -> list[float | None]`, one value per completion."""

    __name__ = "judge"  # TRL names the reward's metrics after it

    def __init__(self, problems: dict[str, Problem], judge: JudgeConfig, llm: LLM, settings: RewardSettings) -> None:
        self.problems = problems
        self.judge = judge
        self.llm = llm
        self.settings = settings

    def proof_of(self, text: str) -> str | None:
        """The text after the last reasoning delimiter; None when the reasoning never closed."""
        _, sep, tail = text.rpartition(self.settings.reasoning_delimiter)
        return tail.strip() if sep else None

    async def grade_one(self, scope: str, problem: Problem, proof: str, sample: int) -> tuple[Grade, float]:
        attempt = Attempt(
            id=f"{problem.id}/{sample}", problem_id=problem.id, sample=sample, scaffold="policy", proof=proof
        )
        start = time.perf_counter()
        with attempt_scope(scope):
            grade = await self.judge.grade(problem, attempt, self.llm)
        return grade, time.perf_counter() - start

    async def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        problem_id: list[str],
        trainer_state: Any = None,
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        step = getattr(trainer_state, "global_step", 0)
        rewards: list[float | None] = [None] * len(completions)
        jobs, where = [], []
        for i, (completion, pid) in enumerate(zip(completions, problem_id, strict=True)):
            proof = self.proof_of(completion_text(completion))
            if proof is None:
                rewards[i] = self.settings.truncation_reward
                continue
            # The scope keys the call cache: a resumed step replays its finished judge calls.
            jobs.append(self.grade_one(f"reward/{step}/{i}/{pid}", self.problems[pid], proof, i))
            where.append(i)
        cost_before = self.llm.stats.cost
        results = await asyncio.gather(*jobs)
        ungraded = 0
        for i, (grade, _seconds) in zip(where, results, strict=True):
            if grade.points is None:
                ungraded += 1
            else:
                rewards[i] = grade.points / grade.max_points
        if log_metric is not None:
            n = max(len(completions), 1)
            log_metric("reward/truncated_rate", (len(completions) - len(where)) / n)
            log_metric("reward/ungraded_rate", ungraded / n)
            if results:
                log_metric("judge/latency_max_s", max(s for _, s in results))
                log_metric("judge/latency_mean_s", sum(s for _, s in results) / len(results))
            log_metric("judge/cost_usd", self.llm.stats.cost - cost_before)
            log_metric("judge/output_tokens_total", float(self.llm.stats.output_tokens))
        return rewards
