"""`BuiltinSource`: built-in problems as a recipe's `problems:` block (`source: builtin`).

The first stage of the BUILTIN flow: `count` problems of one `split`, generated from
`seed` with difficulties cycling over `difficulty` (lo..hi), each a `Problem` with its
statement, reference proof and rubric (`domain.py`). The split is part of every problem's
generator seed, so the training and held-out problems never share a seed; ids say split,
seed, index and difficulty (`builtin-train-s0-0007-d03`); the difficulty knob is
`metadata.level` (`metadata.difficulty` is the RL set's measured mean grade, data/schema.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from qednano.builtin.domain import MAX_DIFFICULTY, MIN_DIFFICULTY, generate, rubric
from qednano.config import Strict
from qednano.records import Problem

SPLITS = ("train", "heldout")


def instance_seed(split: str, seed: int, index: int) -> int:
    """The generator seed of problem `index`: disjoint between splits (train even, held-out odd)."""
    return 2 * (seed * 1_000_003 + index) + SPLITS.index(split)


def problem(split: str, seed: int, index: int, difficulty: int) -> Problem:
    """One built-in problem as a `Problem` record."""
    instance = generate(instance_seed(split, seed, index), difficulty)
    return Problem(
        id=f"builtin-{split}-s{seed}-{index:04d}-d{difficulty:02d}",
        statement=instance.statement(),
        solution=instance.proof(),
        rubric=rubric(instance),
        max_points=7,
        source="builtin",
        metadata={
            "subset": split,
            "category": f"difficulty {difficulty:02d}",
            # Not `difficulty`: in the RL set that key is the base model's mean grade (data/schema.py).
            "level": difficulty,
            "proof_steps": instance.proof_steps(),
        },
    )


class BuiltinSource(Strict):
    """`count` built-in problems of a split, from a seed, over a difficulty range."""

    source: Literal["builtin"] = "builtin"
    split: Literal["train", "heldout"] = "train"
    seed: int = Field(0, ge=0)
    count: int = Field(100, ge=1, le=1_000_000)
    difficulty: tuple[int, int] = (1, 5)
    """Lowest and highest difficulty (1..10); problem i has difficulty lo + i mod (hi - lo + 1)."""

    @model_validator(mode="after")
    def _check(self) -> BuiltinSource:
        lo, hi = self.difficulty
        if not MIN_DIFFICULTY <= lo <= hi <= MAX_DIFFICULTY:
            raise ValueError(f"difficulty must be lo, hi with {MIN_DIFFICULTY} <= lo <= hi <= {MAX_DIFFICULTY}")
        return self

    def load(self) -> list[Problem]:
        lo, hi = self.difficulty
        return [problem(self.split, self.seed, i, lo + i % (hi - lo + 1)) for i in range(self.count)]
