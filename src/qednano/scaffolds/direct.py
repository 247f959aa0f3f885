"""`direct`: one call to the policy, the paper's single-turn baseline (QED-Nano, section 5)."""

from __future__ import annotations

from typing import Literal

from qednano.config import Strict
from qednano.llm.client import Models
from qednano.prompts import render, template
from qednano.records import Problem


class Direct(Strict):
    """Ask the policy once; the final text (reasoning removed) is the proof."""

    name: Literal["direct"] = "direct"
    prompt: str = "proof"
    """Template for the single user message: a bundled name (`proof`, `answer`) or a file path."""

    async def run(self, problem: Problem, models: Models) -> str:
        message = render(template(self.prompt), problem=problem.statement)
        completion = await models.policy.complete([{"role": "user", "content": message}], step="solve")
        return completion.text
