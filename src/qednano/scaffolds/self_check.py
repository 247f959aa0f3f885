"""`self_check`: generate, self-improve, then verify / classify / correct (Huang & Yang 2025).

QED-Nano appendix B: "a simple generate-verify-improve loop that ends when the verifier
cannot find any flaws in the solution anymore". The paper preset is the Huang & Yang IMO
setting used by QED-Nano's evaluation (accept after 5 consecutive passes, give up after 10
consecutive failures, at most 30 iterations); MathArena's cheaper preset is 2 / 4 / 10.

Calls per attempt:

1. `solve` (policy): [system, problem]; then `improve` on the same conversation plus the
   solution and a self-improvement request -> the solution.
2. Iteration i = 1..max_iterations:
   - `verify/i` (verifier): an IMO-grader system prompt; the user message holds the problem
     and the solution cut to the text after "Detailed Solution" (all of it when absent);
   - `classify/i` (verifier): does that report say the proof is correct? yes / no;
   - pass: passes += 1, failures = 0; fail: passes = 0, failures += 1;
   - after a fail, `correct/i` (policy): [system, problem, the solution, the correction
     request with the bug report] -> the new solution, also when the search then gives up
     (as in QED-Nano's code: the correction comes before the stop rules);
   - stop with the solution at `passes` consecutive passes; give up at `failures`
     consecutive failures or after the last iteration, returning the (corrected) solution.

At most 2 + 3 * max_iterations calls (92 for the paper preset). With `return_if_not_found`
off, the correction of a search that gives up is skipped (its text would be discarded).
With a benchmark `task`, the problem message is posed through it, so every solve, improve
and correct call (they share that conversation) carries the task's instruction.

The solution is fenced as data in the `verify` prompt and the report in the `classify`
prompt (`grading/fence.py`); each fenced region is cut from the reply before it is used, so text
the solution plants ("yes", a fake report, fence-like markers) never becomes the
classifier's answer. The bug report sent to `correct` is the verifier's own text.

Fallbacks: the classifier's answer is the last standalone "yes" or "no" in its text; no
such word counts as a fail. The bug report is the verifier's text before "Detailed
Verification" (all of it when absent). A solve, improve or correct call with no final
text keeps the previous solution. On giving up, or when the attempt's token budget is
spent, the latest solution is returned if `return_if_not_found`, else an empty proof.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from pydantic import Field

from qednano.config import Strict
from qednano.llm.client import Models
from qednano.llm.types import BudgetExhausted
from qednano.prompts import render, template
from qednano.records import Problem
from qednano.scaffolds.calls import fenced, posed, user

log = logging.getLogger(__name__)

YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def verdict_is_pass(text: str) -> bool:
    """The classifier's last standalone yes/no; anything else is a fail."""
    words = YES_NO.findall(text)
    return bool(words) and words[-1].lower() == "yes"


def after_marker(text: str, marker: str) -> str:
    """The text after the first `marker` (case-insensitive), or all of it."""
    at = text.lower().find(marker.lower())
    return text[at + len(marker) :].lstrip(" *#:\n") if at >= 0 else text


def before_marker(text: str, marker: str) -> str:
    """The text before the first `marker` (case-insensitive), or all of it."""
    at = text.lower().find(marker.lower())
    return text[:at].rstrip(" *#\n") if at >= 0 else text


class SelfCheck(Strict):
    """Verify and correct until k consecutive passes, m consecutive failures or max iterations."""

    name: Literal["self_check"] = "self_check"
    passes: int = Field(5, ge=1)
    """Consecutive passing verifications that accept the solution (k)."""
    failures: int = Field(10, ge=1)
    """Consecutive failing verifications that end the search (m)."""
    max_iterations: int = Field(30, ge=1)
    """Most verifications."""
    return_if_not_found: bool = True
    """Return the latest solution when none is accepted (else an empty proof, graded 0)."""
    task: str | None = None
    """The benchmark's task template (`{{problem}}`, e.g. `answer`) the problem is posed through; None: bare."""

    async def run(self, problem: Problem, models: Models) -> str:
        system = {"role": "system", "content": template("selfcheck_system")}
        start = [system, {"role": "user", "content": posed(problem.statement, self.task)}]
        solution = ""
        try:
            solution = (await models.policy.complete(start, step="solve")).text
            improve = [*start, assistant(solution), {"role": "user", "content": template("selfcheck_improve")}]
            solution = (await models.policy.complete(improve, step="improve")).text or solution
            passes = failures = 0
            for i in range(1, self.max_iterations + 1):
                passed, report = await self.verify(problem, solution, models, i)
                passes, failures = (passes + 1, 0) if passed else (0, failures + 1)
                if passes >= self.passes:
                    log.info("self_check: accepted after %d iterations", i)
                    return solution
                giving_up = failures >= self.failures or i == self.max_iterations
                if not passed and (self.return_if_not_found or not giving_up):
                    request = render(template("selfcheck_correct"), report=report)
                    messages = [*start, assistant(solution), {"role": "user", "content": request}]
                    solution = (await models.policy.complete(messages, step=f"correct/{i}")).text or solution
                if giving_up:
                    break
        except BudgetExhausted:
            log.info("self_check: token budget spent")
        return solution if self.return_if_not_found else ""

    async def verify(self, problem: Problem, solution: str, models: Models, i: int) -> tuple[bool, str]:
        """(passed, bug report) for one verification: the grader's report, then yes/no."""
        shown = fenced(after_marker(solution, "Detailed Solution"), problem.id, "self_check/verify", "SOLUTION")
        body = render(template("selfcheck_verify"), problem=problem.statement, solution=shown.block)
        system = {"role": "system", "content": template("selfcheck_verify_system")}
        messages = [system, {"role": "user", "content": body}]
        report = shown.cut((await models.verifier.complete(messages, step=f"verify/{i}")).text)
        quoted = fenced(report, problem.id, "self_check/classify", "REPORT", report=True)
        request = user(render(template("selfcheck_classify"), report=quoted.block))
        answer = quoted.cut((await models.verifier.complete(request, step=f"classify/{i}")).text)
        return verdict_is_pass(answer), before_marker(report, "Detailed Verification")


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}
