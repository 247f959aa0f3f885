"""Pairwise knockout selection with an LLM judge, shared by Nomos and RSA (paper appendix B).

Nomos ends with "a simple knockout tournament with an LLM-judge" among the consolidated
group; QED-Nano's one change to RSA is the same tournament over the last population instead
of a random pick. The original code used unseeded global RNGs; here every draw comes from a
`random.Random` the caller seeds per attempt, so a bracket is reproducible and a re-run
replays its calls from the cache.

Each round the survivors are shuffled and paired in order; an odd one out gets a bye. Both
proofs of a pair go to the judge in one call (`tournament/r{round}.m{match}`), all matches
of a round concurrently, each fenced as data (`grading/fence.py`). The judge ends with
`<verdict>1|2|tie</verdict>`; text it quotes from inside a fence is never read as its verdict.

Fallbacks: the last `<verdict>` tag wins; without a tag, a lone `1` or `2` after the last
word "verdict" is read; anything else is a tie. A tie is broken by a seeded coin, drawn in
match order after the whole round is judged. If the attempt's token budget runs out, the
tournament stops: undecided matches are settled by the coin and the winner is the first
survivor in bracket order (`Bracket.complete` is then False).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from qednano.grading.fence import fence
from qednano.grading.verdicts import cut_fenced
from qednano.llm.client import LLM
from qednano.llm.types import BudgetExhausted
from qednano.prompts import render, template
from qednano.records import Problem
from qednano.scaffolds.calls import gather, user

log = logging.getLogger(__name__)

Verdict = Literal["1", "2", "tie"]
EMPTY = "(empty: this attempt produced no final text)"

TAG = re.compile(r"<verdict>\s*(1|2|tie)\s*</verdict>", re.IGNORECASE)
LONE = re.compile(r"(?<![\w.])([12])(?!\w|\.\d)")


def parse_verdict(text: str) -> Verdict:
    """The judge's verdict; `tie` when it cannot be read (see the module docstring)."""
    tags = TAG.findall(text)
    if tags:
        return tags[-1].lower()  # type: ignore[return-value]
    at = text.lower().rfind("verdict")
    if at >= 0:
        lone = LONE.findall(text[at + len("verdict") :])
        if len(set(lone)) == 1:
            return lone[0]  # type: ignore[return-value]
    return "tie"


@dataclass(frozen=True)
class Match:
    """One judged pair: entrant indices into the proofs given to `knockout`."""

    round: int
    first: int
    second: int
    verdict: Verdict | None
    """None when the budget ran out before this match was judged."""
    winner: int


@dataclass
class Bracket:
    """The outcome of a knockout: the winner's index and every match and bye."""

    winner: int
    matches: list[Match] = field(default_factory=list)
    byes: list[tuple[int, int]] = field(default_factory=list)
    """(round, entrant) for each bye."""
    complete: bool = True
    """False when the token budget stopped the tournament early."""


async def judge_pair(problem: Problem, first: str, second: str, llm: LLM, step: str, prompt: str) -> Verdict | None:
    """One match; None when the attempt's token budget is spent.

    Each proof is fenced as data (`grading/fence.py`: unforgeable markers, verdict-like tags and
    instructions to the grader neutralised), and any fenced text the judge quotes back is cut
    before the verdict is read, so a proof cannot vote for itself.
    """
    one = fence(first or EMPTY, judge=step, problem_id=problem.id, what="PROOF 1")
    two = fence(second or EMPTY, judge=step, problem_id=problem.id, what="PROOF 2")
    message = render(template(prompt), problem=problem.statement, first=one.block, second=two.block)
    try:
        completion = await llm.complete(user(message), step=step)
    except BudgetExhausted:
        return None
    return parse_verdict(cut_fenced(cut_fenced(completion.text, one.begin, one.end), two.begin, two.end))


async def knockout(
    problem: Problem,
    proofs: Sequence[str],
    llm: LLM,
    rng: random.Random,
    *,
    prompt: str = "tournament",
    step: str = "tournament",
) -> Bracket:
    """Single-elimination over `proofs`; returns the bracket with the winner's index."""
    if not proofs:
        raise ValueError("a tournament needs at least one proof")
    bracket = Bracket(winner=0)
    alive = list(range(len(proofs)))
    round_no = 0
    while len(alive) > 1:
        round_no += 1
        rng.shuffle(alive)
        pairs = [(alive[i], alive[i + 1]) for i in range(0, len(alive) - 1, 2)]
        bye = alive[-1] if len(alive) % 2 else None
        verdicts = await gather(
            judge_pair(problem, proofs[a], proofs[b], llm, f"{step}/r{round_no}.m{i}", prompt)
            for i, (a, b) in enumerate(pairs)
        )
        winners = []
        for (a, b), verdict in zip(pairs, verdicts, strict=True):
            if verdict == "1":
                winner = a
            elif verdict == "2":
                winner = b
            else:
                winner = rng.choice((a, b))
            bracket.matches.append(Match(round_no, a, b, verdict, winner))
            winners.append(winner)
        if bye is not None:
            bracket.byes.append((round_no, bye))
            winners.append(bye)
        alive = winners
        if None in verdicts:
            log.info("tournament stopped in round %d: token budget spent", round_no)
            bracket.complete = False
            break
    bracket.winner = alive[0]
    return bracket
