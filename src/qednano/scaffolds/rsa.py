"""`rsa`: recursive self-aggregation, then a pairwise knockout (Venkatraman et al. 2026).

QED-Nano appendix B: RSA "first generates solutions. In each subsequent stage, it then
generates new solutions by randomly conditioning each new solution on existing ones". The
paper's one change: "instead of selecting an arbitrary proof, we run a knockout tournament
with an LLM-judge on the solutions from the last stage". Section 5 reports QED-Nano with
RSA in Table 1 (population 8, sets of 3, 3 rounds); the RSA paper uses 16 / 4 / 10 loops
(its loop count includes the first generation, so 9 aggregation rounds).

Calls per attempt: N + T * N + (N - 1) with the tournament.

1. `solve/s` for s < N (policy): the initial population;
2. round t = 1..T: member s of the new population is `aggregate/r{t}.{s}` (policy) over
   an aggregation set of K distinct members of round t - 1 (their final texts; with
   `with_reasoning`, their reasoning too), with the
   refine prompt when K = 1. The new population replaces the old one;
3. `tournament/...` (verifier): a seeded knockout over the last population
   (`select: random` instead picks a seeded random member, as the original RSA).

Aggregation sets (seeded per attempt, all drawn before the first call): `balanced`, as
QED-Nano's code, shuffles the population and takes K distinct cyclic offsets, so every
member feeds exactly K new members; `independent`, as the RSA paper, draws each set
afresh. A new member starts as soon as its own K inputs exist (no barrier per round), so
one slow sample delays only the members that read it.

Aggregation inputs are shown unfenced: the policy is asked to write a proof from them, not
to judge them, so no score or verdict is read from its reply; the final selection is the
knockout, which fences both proofs of every match (`tournament.py`).

With a benchmark `task` (AnswerBench's boxed answer), every aggregation poses the problem
through it, as the initial solve does through `prompt`. `aggregate_prompt` replaces the
aggregation template for a policy that speaks another language (the built-in prover's
`builtin_rsa_aggregate`).

`with_reasoning` shows each candidate's reasoning too (`<think>...</think>` before its text), as
the RSA paper's code passes full reasoning chains: a candidate cut off mid-thought then still
shows what it found, not an empty attempt.

Fallbacks: a member with no final text stays in the population and is shown to later
calls as an empty attempt, but is never returned while another member has text: the
knockout (or the random pick) runs over the members of the last population that have text.
When the token budget is spent, the returned proof is the lowest-index finished member with
text of the most advanced round that has one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Literal

from pydantic import Field, model_validator

from qednano.config import Strict
from qednano.llm.client import Models
from qednano.llm.types import BudgetExhausted
from qednano.prompts import candidates_block, render, template
from qednano.records import Problem
from qednano.scaffolds.calls import attempt_rng, gather, posed, user
from qednano.scaffolds.tournament import EMPTY, knockout

log = logging.getLogger(__name__)


def balanced_sets(rng: random.Random, n: int, k: int) -> list[list[int]]:
    """N sets of K distinct members in which every member appears exactly K times."""
    perm = rng.sample(range(n), n)
    offsets = rng.sample(range(n), k)
    return [[perm[(s + o) % n] for o in offsets] for s in range(n)]


def independent_sets(rng: random.Random, n: int, k: int) -> list[list[int]]:
    """N sets of K distinct members, each drawn independently."""
    return [rng.sample(range(n), k) for _ in range(n)]


class RSA(Strict):
    """Population N, aggregation sets of K distinct members, T rounds, then a knockout."""

    name: Literal["rsa"] = "rsa"
    population: int = Field(8, ge=1)
    """N: solutions per round."""
    k: int = Field(3, ge=1)
    """K: members in each aggregation set."""
    rounds: int = Field(3, ge=0)
    """T: aggregation rounds after the initial population."""
    sets: Literal["balanced", "independent"] = "balanced"
    select: Literal["tournament", "random"] = "tournament"
    prompt: str = "proof"
    """Template of the initial solve message (`problem` placeholder)."""
    task: str | None = None
    """The benchmark's task template (`{{problem}}`, e.g. `answer`) aggregations pose the problem through."""
    aggregate_prompt: str | None = None
    """Template of an aggregation message (`problem`, `candidates`); None: `rsa_refine` when K = 1, else `rsa_aggregate`."""
    with_reasoning: bool = False
    """Show each candidate's reasoning with its text in aggregations (see the module docstring)."""
    tournament_prompt: str = "tournament"
    """Template of a knockout match (`problem`, `first`, `second`; `scaffolds/tournament.py`)."""
    seed: int = 0
    """With the attempt id, seeds the aggregation sets and the tournament."""

    @model_validator(mode="after")
    def _check(self) -> RSA:
        if self.k > self.population:
            raise ValueError(f"k ({self.k}) cannot exceed population ({self.population})")
        return self

    def draw(self, rng: random.Random) -> list[list[list[int]]]:
        """Aggregation sets per round: draw[t][s] are the inputs of member s of round t + 1."""
        make = balanced_sets if self.sets == "balanced" else independent_sets
        return [make(rng, self.population, self.k) for _ in range(self.rounds)]

    async def run(self, problem: Problem, models: Models) -> str:
        rng = attempt_rng(self.seed, "rsa")
        sets = self.draw(rng)
        layers: list[list[asyncio.Task[str]]] = []
        shown: dict[tuple[int, int], str] = {}
        """What an aggregation shows of member (t, s): its text, after its reasoning with `with_reasoning`."""

        async def member(t: int, s: int) -> str:
            if t == 0:
                message = render(template(self.prompt), problem=problem.statement)
                done = await models.policy.complete(user(message), step=f"solve/{s}")
            else:
                for j in sets[t - 1][s]:
                    await layers[t - 1][j]
                inputs = [shown[t - 1, j] for j in sets[t - 1][s]]
                prompt = self.aggregate_prompt or ("rsa_refine" if self.k == 1 else "rsa_aggregate")
                statement = posed(problem.statement, self.task)
                message = render(template(prompt), problem=statement, candidates=candidates_block(inputs, EMPTY))
                done = await models.policy.complete(user(message), step=f"aggregate/r{t}.{s}")
            thought = done.reasoning.strip() if self.with_reasoning else ""
            shown[t, s] = f"<think>\n{thought}\n</think>\n{done.text}" if thought else done.text
            return done.text

        for t in range(self.rounds + 1):
            layers.append([asyncio.ensure_future(member(t, s)) for s in range(self.population)])
        try:
            await gather(task for layer in layers for task in layer)
        except BudgetExhausted:
            log.info("rsa: token budget spent; returning the most advanced finished member")
            return most_advanced(layers)
        final = [text for text in (task.result() for task in layers[-1]) if text] or [""]
        if self.select == "random" or len(final) == 1:
            return final[rng.randrange(len(final))]
        bracket = await knockout(problem, final, models.verifier, rng, prompt=self.tournament_prompt)
        return final[bracket.winner]


def most_advanced(layers: list[list[asyncio.Task[str]]]) -> str:
    """The lowest-index finished member with text of the latest round that has one ("" if none has)."""
    for layer in reversed(layers):
        for task in layer:
            if task.done() and not task.cancelled() and task.exception() is None and task.result():
                return task.result()
    return ""
