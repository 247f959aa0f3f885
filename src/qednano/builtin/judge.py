"""`BuiltinJudge`: the exact judge of the built-in proof domain, a `Judge` like the LLM judges.

The GRADE stage of the BUILTIN flow and the reward of built-in RL: recipes pick it with
`kind: builtin` in the `JudgeConfig` union (`grading/judge.py`), so `qednano grade`, the
eval cells, the reports and the training reward run on it unchanged. It makes no model
call (the `llm` argument is accepted and ignored): `check.py` checks every step and scores
by the problem's rubric. A problem that is not in the built-in form is ungraded
(`points=None`, flag `not_builtin`), never 0.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qednano.builtin.check import check
from qednano.config import Strict
from qednano.records import Attempt, Grade, Problem, content_id


class BuiltinJudge(Strict):
    """Grade a built-in proof exactly: every step checked, the rubric's checkpoints and deductions applied."""

    kind: Literal["builtin"] = "builtin"
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Readable prefix of `name` (default `builtin`); the config hash is always appended."""

    @property
    def name(self) -> str:
        return f"{self.label or 'builtin'}-{content_id(self.model_dump(mode='json'), length=6)}"

    async def grade(self, problem: Problem, attempt: Attempt, llm: object = None) -> Grade:
        """Check the attempt's proof; see the module docstring."""
        result = check(
            problem.statement,
            problem.rubric,
            attempt.proof,
            max_points=problem.max_points,
            truncated=attempt.truncated,
        )
        return Grade(
            attempt_id=attempt.id,
            problem_id=problem.id,
            judge=self.name,
            points=result.points,
            max_points=problem.max_points,
            explanation=result.explanation(),
            flags=result.flags,
            metadata=result.metadata(),
        )
