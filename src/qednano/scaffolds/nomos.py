"""`nomos`: sample, self-score 0-7, keep the best, consolidate, knockout (after Nomos, Jin et al. 2025).

QED-Nano appendix B: the scaffold "first generates solutions and verifies each of them once.
It then filters the solutions to only keep the best ones, after which it is run through a
single consolidation stage, where the model is presented with all solutions and asked which
group of solutions is most likely to be correct. Among that group, the agent runs a simple
knockout tournament with an LLM-judge to select the best one." QED-Nano's fixed-budget
variant: 16 samples, keep at most 12, only the perfect ones when at least 8 score 7.

Calls per attempt (at most n + n + 1 + (kept - 1)):

1. `solve/i` then `score/i` for i < n, each solution scored as soon as it exists, all n
   chains concurrently (policy solves; the verifier role scores, 0-7, `\\boxed{N}`);
2. keep the perfect (7/7) solutions if there are at least `perfect_target`, else the
   `keep` highest-scored (ties: lower index first), at most `keep` either way;
3. `consolidate` (verifier): all kept solutions with their feedback; the answer names
   the group with the right conclusion as `<keep>[i, ...]</keep>` (1-based);
4. a seeded pairwise knockout over that group (`tournament.py`).

Every solution is fenced as data where the verifier judges it (`grading/fence.py`): in `score/i`
the submission, in `consolidate` each submission and its feedback. The fenced regions are
cut from the reply before `\\boxed{}` or `<keep>` is read, so a solution that writes a score
or a keep list of its own cannot choose its fate; the feedback kept for consolidation is the
verifier's own text.

Context window: the consolidation shows every kept solution and its feedback in one call.
When that prompt does not fit the verifier's `context_length`, the lowest-scored solution
(ties: the later one) is dropped, as the original Nomos does, until it fits; the drop is
noted on the consolidation's Completion (`notes`). With a benchmark `task` (AnswerBench's
boxed answer), the consolidation poses the problem through it.

Fallbacks: a solution with no final text is scored 0 without a call; a score is the last
`\\boxed{}` integer in 0..7, and a missing or out-of-range score counts as 0. The last
`<keep>` tag is read; numbers outside the list are ignored; no tag, or no valid number,
keeps every kept solution. When the token budget is spent the highest-scored solution of
the current group (ties: lower index) is returned.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from qednano.config import Strict
from qednano.grading.fence import Fenced
from qednano.llm.client import Models
from qednano.llm.types import BudgetExhausted
from qednano.prompts import render, template
from qednano.records import Problem
from qednano.scaffolds.calls import attempt_rng, fenced, gather, posed, user
from qednano.scaffolds.tournament import knockout

log = logging.getLogger(__name__)

BOXED_INT = re.compile(r"\\boxed\{\s*(\d+)\s*\}")
KEEP = re.compile(r"<keep>(.*?)</keep>", re.IGNORECASE | re.DOTALL)


def parse_score(text: str, top: int = 7) -> int | None:
    """The last `\\boxed{N}` with 0 <= N <= top; None when there is none."""
    found = [int(n) for n in BOXED_INT.findall(text)]
    return found[-1] if found and 0 <= found[-1] <= top else None


def parse_keep(text: str, count: int) -> list[int]:
    """0-based indices named (1-based) in the last `<keep>` tag; all `count` when unreadable."""
    tags = KEEP.findall(text)
    if tags:
        picked = [int(n) - 1 for n in re.findall(r"\d+", tags[-1])]
        valid = list(dict.fromkeys(i for i in picked if 0 <= i < count))
        if valid:
            return valid
    return list(range(count))


@dataclass
class Scored:
    index: int
    text: str
    score: int
    """0-7; 0 when missing, unreadable or not scored."""
    feedback: str = ""


def best(pool: list[Scored]) -> str:
    """The highest-scored solution (ties: the lowest index)."""
    return max(pool, key=lambda s: (s.score, -s.index)).text if pool else ""


class Nomos(Strict):
    """n scored samples -> keep the best -> consolidate -> pairwise knockout."""

    name: Literal["nomos"] = "nomos"
    samples: int = Field(16, ge=1)
    """Solutions generated (n)."""
    keep: int = Field(12, ge=1)
    """Most solutions kept for consolidation."""
    perfect_target: int = Field(8, ge=1)
    """With at least this many 7/7 solutions, keep only perfect ones."""
    prompt: str = "proof"
    """Template of the solve message (`problem` placeholder)."""
    task: str | None = None
    """The benchmark's task template (`{{problem}}`, e.g. `answer`) the consolidation poses the problem through."""
    seed: int = 0
    """With the attempt id, seeds the tournament bracket and its coin."""

    @model_validator(mode="after")
    def _check(self) -> Nomos:
        if self.keep > self.samples:
            raise ValueError(f"keep ({self.keep}) cannot exceed samples ({self.samples})")
        return self

    async def run(self, problem: Problem, models: Models) -> str:
        pool: list[Scored] = []
        try:
            await gather(self.solve_and_score(problem, models, i, pool) for i in range(self.samples))
            pool.sort(key=lambda s: s.index)
            perfect = [s for s in pool if s.score == 7]
            if len(perfect) >= self.perfect_target:
                pool = perfect[: self.keep]
            else:
                pool = sorted(pool, key=lambda s: -s.score)[: self.keep]
            if len(pool) > 1:
                pool = await self.consolidate(problem, models, pool)
            if len(pool) == 1:
                return pool[0].text
            rng = attempt_rng(self.seed, "nomos/tournament")
            bracket = await knockout(problem, [s.text for s in pool], models.verifier, rng)
            return pool[bracket.winner].text
        except BudgetExhausted:
            log.info("nomos: token budget spent; returning the best-scored solution")
            return best(pool)

    async def solve_and_score(self, problem: Problem, models: Models, i: int, pool: list[Scored]) -> None:
        message = render(template(self.prompt), problem=problem.statement)
        text = (await models.policy.complete(user(message), step=f"solve/{i}")).text
        if not text:
            pool.append(Scored(i, "", 0))
            return
        scored = Scored(i, text, 0)
        pool.append(scored)
        shown = fenced(text, problem.id, "nomos/score", "SUBMISSION")
        review = render(template("nomos_score"), problem=problem.statement, submission=shown.block)
        feedback = shown.cut((await models.verifier.complete(user(review), step=f"score/{i}")).text)
        scored.score, scored.feedback = parse_score(feedback) or 0, feedback

    async def consolidate(self, problem: Problem, models: Models, pool: list[Scored]) -> list[Scored]:
        """The group the consolidation keeps; first the lowest-scored solutions dropped until the call fits."""
        notes: list[str] = []

        def drop_worst() -> None:
            nonlocal pool
            worst = min(pool, key=lambda s: (s.score, -s.index))
            pool = [s for s in pool if s is not worst]
            notes.append(f"context: dropped solution {worst.index} (score {worst.score}) from the consolidation")
            log.warning("nomos: %s", notes[-1])

        # Fencing long texts is slow: drop on the unfenced prompt first, then check the real one.
        while len(pool) > 1 and not models.verifier.fits(self.consolidation(problem, pool, fence=False)[0]):
            drop_worst()
        messages, fences = self.consolidation(problem, pool)
        while len(pool) > 1 and not models.verifier.fits(messages):
            drop_worst()
            messages, fences = self.consolidation(problem, pool)
        if len(pool) == 1:
            return pool
        answer = (await models.verifier.complete(messages, step="consolidate", notes=notes)).text
        for f in fences:
            answer = f.cut(answer)
        return [pool[i] for i in parse_keep(answer, len(pool))]

    def consolidation(
        self, problem: Problem, pool: list[Scored], *, fence: bool = True
    ) -> tuple[list[dict[str, str]], list[Fenced]]:
        """The consolidation call's messages over `pool`, and the fences to cut from its answer.

        `fence=False`: the texts as they are, for a quick size check (fences add little).
        """
        fences: list[Fenced] = []
        blocks = []
        for n, s in enumerate(pool, start=1):
            if fence:
                shown = fenced(s.text, problem.id, "nomos/consolidate", f"SUBMISSION {n}")
                feedback = fenced(s.feedback, problem.id, "nomos/consolidate", f"FEEDBACK {n}", report=True)
                fences += [shown, feedback]
                text, said = shown.block, feedback.block
            else:
                text, said = s.text, s.feedback
            blocks.append(f"### Submission {n}\n\n{text}\n\n#### Grader feedback for submission {n}\n\n{said}")
        statement = posed(problem.statement, self.task)
        message = render(template("nomos_consolidate"), problem=statement, submissions="\n\n".join(blocks))
        return user(message), fences
