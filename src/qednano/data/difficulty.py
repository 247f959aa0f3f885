"""Difficulty annotation and the RL prompt selection (QED-Nano section 3 "Problem difficulty annotations", 4.1).

The paper runs the base model (Qwen3-4B-Thinking) 128 times per problem, grades every attempt
with the training judge (GPT-OSS-20B, the rubric) and stores the mean score as the problem's
difficulty. Here those attempts and grades come from an ordinary `qednano generate`
(`samples: n`) and `qednano grade` run; `difficulty()` reads them back:

- the difficulty of a problem is the mean grade, as a fraction of full marks, of its graded
  attempts (ungraded ones are left out, never counted as 0); None when none was graded;
- `select()` applies the paper's rule to the RL prompt set: drop problems solved every time
  (mean >= `drop_solved`) and problems never solved (mean <= `drop_unsolved`), then shape the
  rest towards the hard end, "unimodal and heavy-tailed with a peak near difficult problems,
  as in Polaris": a problem of difficulty d is kept with probability
  `exp(-max(0, d - peak) / temperature)`, decided by a seeded hash of its id, so the hardest
  problems are all kept and easier ones ever more rarely;
- `histogram()` counts problems per difficulty bin, before and after selection (the report).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import Field

from qednano.config import Strict
from qednano.records import Grade, Problem


@dataclass(frozen=True)
class Difficulty:
    """One problem's measured difficulty."""

    mean: float | None
    """Mean score of the graded attempts (fraction of full marks); None when none was graded."""
    graded: int
    ungraded: int


def difficulty(problems: Iterable[Problem], grades: Iterable[Grade]) -> dict[str, Difficulty]:
    """The mean score per problem over its graded attempts (one grade per attempt: the last one written)."""
    last: dict[str, Grade] = {}
    for g in grades:
        last[g.attempt_id] = g
    scores: dict[str, list[float]] = {}
    missing: dict[str, int] = {}
    for g in last.values():
        if g.score is None:
            missing[g.problem_id] = missing.get(g.problem_id, 0) + 1
        else:
            scores.setdefault(g.problem_id, []).append(g.score)
    out = {}
    for p in problems:
        mine = scores.get(p.id, [])
        out[p.id] = Difficulty(sum(mine) / len(mine) if mine else None, len(mine), missing.get(p.id, 0))
    return out


def annotate(problems: list[Problem], measured: dict[str, Difficulty]) -> list[Problem]:
    """Problems with `metadata.difficulty` (and the attempt counts) from `measured`."""
    out = []
    for p in problems:
        d = measured.get(p.id)
        if d is None:
            out.append(p)
            continue
        meta = {**p.metadata, "difficulty": d.mean, "difficulty_graded": d.graded, "difficulty_ungraded": d.ungraded}
        out.append(p.model_copy(update={"metadata": meta}))
    return out


class Selection(Strict):
    """The RL prompt selection rule; every number is a recipe's."""

    drop_solved: float = Field(default=1.0, ge=0, le=1)
    """Drop problems whose mean score is at least this (1.0: solved with full marks every time)."""
    drop_unsolved: float = Field(default=0.0, ge=0, le=1)
    """Drop problems whose mean score is at most this (0.0: no attempt earned a point)."""
    peak: float = Field(default=0.0, ge=0, le=1)
    """Problems at most this easy are all kept; the keep probability falls off above it."""
    temperature: float | None = Field(default=0.35, gt=0)
    """How fast the keep probability falls off with the mean score; None keeps every problem in range."""
    unmeasured: bool = False
    """Keep problems with no measured difficulty (no graded attempt)."""
    max_problems: int | None = Field(default=None, ge=1)
    """Keep at most this many, the hardest first."""
    seed: int = 0


def keep_draw(problem_id: str, seed: int) -> float:
    """A uniform number in [0, 1) from the problem id and the seed (stable across runs and machines)."""
    digest = hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def select(problems: list[Problem], rule: Selection) -> tuple[list[Problem], list[tuple[Problem, str]]]:
    """(kept, dropped with the reason) by the paper's rule; reads `metadata.difficulty`."""
    kept: list[Problem] = []
    dropped: list[tuple[Problem, str]] = []
    for p in problems:
        d = p.metadata.get("difficulty")
        if d is None:
            if rule.unmeasured:
                kept.append(p)
            else:
                dropped.append((p, "no measured difficulty"))
        elif d >= rule.drop_solved:
            dropped.append((p, f"solved every time (mean {d:.3f} >= {rule.drop_solved:g})"))
        elif d <= rule.drop_unsolved:
            dropped.append((p, f"never solved (mean {d:.3f} <= {rule.drop_unsolved:g})"))
        elif rule.temperature is not None:
            chance = math.exp(-max(0.0, d - rule.peak) / rule.temperature)
            if keep_draw(p.id, rule.seed) < chance:
                kept.append(p)
            else:
                dropped.append((p, f"shaped out (mean {d:.3f}, keep chance {chance:.2f})"))
        else:
            kept.append(p)
    if rule.max_problems is not None and len(kept) > rule.max_problems:
        ordered = sorted(kept, key=lambda p: (p.metadata.get("difficulty") is None, p.metadata.get("difficulty") or 0))
        dropped += [(p, f"over max_problems {rule.max_problems}") for p in ordered[rule.max_problems :]]
        keep = {p.id for p in ordered[: rule.max_problems]}
        kept = [p for p in kept if p.id in keep]
    return kept, dropped


def histogram(values: Iterable[float | None], bins: int = 10) -> list[int]:
    """Counts per bin of width 1/bins over [0, 1] (1.0 falls in the last bin); None values are left out."""
    counts = [0] * bins
    for v in values:
        if v is not None:
            counts[min(bins - 1, int(v * bins))] += 1
    return counts


def histogram_markdown(before: list[int], after: list[int]) -> str:
    """A table of the two histograms with a bar for the selected counts."""
    bins = len(before)
    top = max([*after, 1])
    lines = ["| mean score | all | selected | |", "|---|---|---|---|"]
    for i in range(bins):
        bar = "#" * round(30 * after[i] / top)
        lines.append(f"| {i / bins:.1f}-{(i + 1) / bins:.1f} | {before[i]} | {after[i]} | `{bar}` |")
    return "\n".join(lines)
