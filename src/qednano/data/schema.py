"""The two training sets' row schemas: what `qednano export` writes and `qednano sft`, `grpo` and `rc` read.

Both sets are stored as a `datasets` folder (`save_to_disk`), parquet or JSONL, one row per
example, with exactly these columns, and can be pushed to the hub. The published
`lm-provers/FineProofs-SFT` and `lm-provers/FineProofs-RL` sets load into the same rows
through a column mapping (their `task` is our `problem`, their `schema` our `rubric`).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from qednano.config import Strict
from qednano.records import Problem


class SFTExample(Strict):
    """One supervised example: a conversation whose assistant turn is a teacher's proof."""

    messages: list[dict[str, Any]]
    """Chat messages (`role`, `content`): the user turn asks for a proof of the problem; the
    assistant turn is `<think>{reasoning}</think>{proof}` (the reasoning may be empty)."""
    problem_id: str
    source: str = ""
    """Where the problem comes from (dataset or benchmark name)."""
    grade: float | None = None
    """The teacher attempt's grade as a fraction of full marks; None when ungraded."""
    num_tokens: int | None = None
    """Tokens of the whole conversation under the exporting tokenizer; None when not counted."""


class RLProblem(Strict):
    """One RL prompt: a problem with its reference solution, rubric and measured difficulty."""

    problem_id: str
    problem: str
    """The statement shown to the policy."""
    solution: str = ""
    """A reference solution (the training judge does not see it by default)."""
    rubric: str = ""
    """The marking scheme in the canonical text form (checkpoints summing to `max_points`)."""
    answer: str = ""
    """A final answer, for answer-checked problems; empty for proofs."""
    max_points: int = Field(7, ge=1)
    difficulty: float | None = None
    """Mean grade (fraction of full marks) of the base model's attempts; None when not measured."""
    source: str = ""

    def to_problem(self) -> Problem:
        """The `Problem` the judge grades against (difficulty kept in the metadata)."""
        return Problem(
            id=self.problem_id,
            statement=self.problem,
            solution=self.solution,
            rubric=self.rubric,
            answer=self.answer,
            max_points=self.max_points,
            source=self.source,
            metadata={} if self.difficulty is None else {"difficulty": self.difficulty},
        )

    @classmethod
    def from_problem(cls, problem: Problem) -> RLProblem:
        difficulty = problem.metadata.get("difficulty")
        return cls(
            problem_id=problem.id,
            problem=problem.statement,
            solution=problem.solution,
            rubric=problem.rubric,
            answer=problem.answer,
            max_points=problem.max_points,
            difficulty=None if difficulty is None else float(difficulty),
            source=problem.source,
        )
