"""The judges: `ProofJudge` (rubric-based, 0..max_points) and `AnswerJudge` (final answers).

The GRADE stage of the EVAL and DATA flows and the RL reward all call the same judge
(`async judge.grade(problem, attempt, llm) -> Grade`). A judge is a validated config picked
in a recipe's `judges:` list by its `kind` (`JudgeConfig`, a discriminated union); its
`name` is unique per configuration and names the grades file `grades/<name>.jsonl`.

`ProofJudge` (QED-Nano section 4.1 and appendices A, E; anchor section 3.2) grades the final
proof (reasoning already removed; a DSM-style self-evaluation is cut too) in one of six
prompt styles. Each style's template is ours, written from the published descriptions:

- `imo_proofbench`: IMO-ProofBench's ProofAutoGrader protocol: reference solution plus
  grading guidelines, verdict restricted to the levels 7/6/1/0 (with max_points m: m, m-1, 1, 0).
- `proofbench`: ProofBench (Ma et al.): the marking scheme as an advisory guide, optional reference.
- `proofbench_strict`: the paper's training judge (gpt-oss-20b, medium reasoning): strict
  adherence to the marking scheme, no reference solution (appendix A, Tables 4 and 5).
- `opc`, `gimo`, `simple`: the other prompt families of appendix E (Open Proof Corpus,
  Huang & Yang verifier, step-by-step review).

Grading failures stay visible (ARCHITECTURE rule 6): a reply with no usable verdict after
the bounded re-asks gives `points=None` with the reason; an `LLMError` (the call failed
after the LLM's retries) propagates, so the pipeline writes nothing and a re-run retries it.
Only an empty proof is a real 0 without a call (the training reward's "no_input" case).

Grade metadata written by `ProofJudge`: `style`, `reference` (bool), `sample_points`
(one int or None per judge sample), `aggregate`, `reasks`, `verdict_errors`, and
`injection` (what `fence.py` neutralised, when anything was).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from typing import Annotated, Any, Literal

from pydantic import Field

from qednano.builtin.judge import BuiltinJudge
from qednano.config import Strict
from qednano.grading.answers import AnswerJudge
from qednano.grading.fence import fence
from qednano.grading.verdicts import ask, parse_points, strip_self_evaluation
from qednano.llm.client import LLM
from qednano.llm.types import ContextLengthError
from qednano.prompts import PromptError, fields, render, template
from qednano.records import Attempt, Completion, Grade, Problem, content_id

log = logging.getLogger(__name__)

Style = Literal["imo_proofbench", "proofbench", "proofbench_strict", "opc", "gimo", "simple"]
NEEDS_REFERENCE: frozenset[str] = frozenset({"imo_proofbench"})
"""Styles whose protocol always shows the reference solution."""


def config_name(prefix: str, config: Strict, label: str | None) -> str:
    """`<label or prefix>-<6 hex digits of the whole config>`: readable, file-name safe, unique per config."""
    digest = content_id(config.model_dump(mode="json"), length=6)
    return f"{label or prefix}-{digest}"


class ProofJudge(Strict):
    """Grade a proof against the problem's marking scheme on 0..max_points, in one prompt style."""

    kind: Literal["proof"] = "proof"
    style: Style = "proofbench_strict"
    """Prompt style; `proofbench_strict` is the paper's training judge."""
    reference: bool | None = None
    """Show the reference solution; None: only for styles that require it (`imo_proofbench`)."""
    prompt: str | None = None
    """A custom template file instead of the bundled one (needs `{{problem}}` and `{{proof}}`)."""
    samples: int = Field(1, ge=1, le=64)
    """Independent judge samples per attempt (ProofBench's ProofGrader uses 5, aggregated by median)."""
    aggregate: Literal["median", "mean"] = "median"
    """How the samples' points are combined (over the samples that gave a verdict)."""
    max_reasks: int = Field(2, ge=0, le=10)
    """Re-asks per sample when the reply has no usable verdict; then the sample is ungraded."""
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Readable prefix of `name` (default `proof-<style>`); the config hash is always appended."""

    @property
    def name(self) -> str:
        return config_name(f"proof-{self.style}", self, self.label)

    @property
    def shows_reference(self) -> bool:
        return self.style in NEEDS_REFERENCE if self.reference is None else self.reference

    def levels(self, max_points: int) -> set[int] | None:
        """The verdicts this style allows (IMO-ProofBench: full, almost, partial, zero)."""
        return {0, 1, max_points - 1, max_points} if self.style == "imo_proofbench" else None

    def prompt_for(self, problem: Problem, proof_block: str) -> tuple[str, list[str]]:
        """The judge prompt and the flags about missing inputs."""
        flags = []
        scheme = problem.rubric.strip()
        if not scheme:
            flags.append("no_rubric")
            scheme = "(No marking scheme is available: grade by mathematical correctness and completeness.)"
        reference = ""
        if self.shows_reference:
            if problem.solution.strip():
                reference = problem.solution.strip()
            else:
                flags.append("no_reference")
                reference = "(No reference solution is available.)"
            if self.style not in NEEDS_REFERENCE:
                reference = f"# Reference solution (one valid approach, not necessarily the only one)\n\n{reference}"
        text = template(self.prompt or f"judge_{self.style}")
        values: dict[str, Any] = {
            "problem": problem.statement.strip(),
            "marking_scheme": scheme,
            "reference": reference,
            "proof": proof_block,
            "max_points": problem.max_points,
            "almost": problem.max_points - 1,
        }
        used = fields(text)
        if not {"problem", "proof"} <= used:
            raise PromptError(f"judge prompt {self.prompt or self.style!r} needs {{{{problem}}}} and {{{{proof}}}}")
        return render(text, **{k: v for k, v in values.items() if k in used}), flags

    async def grade(self, problem: Problem, attempt: Attempt, llm: LLM) -> Grade:
        """Grade one attempt; see the module docstring for what can come back."""
        proof = strip_self_evaluation(attempt.proof)
        flags: list[str] = ["truncated_attempt"] if attempt.truncated else []
        meta: dict[str, Any] = {"style": self.style, "reference": self.shows_reference}
        if proof != attempt.proof.rstrip():
            meta["self_evaluation_removed"] = True

        def grade_of(points: float | None, explanation: str, transcript: list[Completion]) -> Grade:
            return Grade(
                attempt_id=attempt.id,
                problem_id=problem.id,
                judge=self.name,
                points=points,
                max_points=problem.max_points,
                explanation=explanation,
                flags=flags,
                transcript=transcript,
                metadata=meta,
            )

        if not proof.strip():
            flags.append("empty_proof")
            return grade_of(0, "The attempt contains no proof.", [])

        fenced = fence(proof, judge=self.name, problem_id=problem.id)
        flags.extend(fenced.flags)
        if fenced.findings:
            meta["injection"] = fenced.findings
            log.warning("%s: neutralised text aimed at the grader: %s", attempt.id, "; ".join(fenced.findings))
        prompt, missing = self.prompt_for(problem, fenced.block)
        flags.extend(missing)
        levels = self.levels(problem.max_points)

        def parse(text: str) -> Any:
            return parse_points(text, problem.max_points, levels=levels, fence=(fenced.begin, fenced.end))

        verdict_format = f"<points>N</points>, where N is an integer from 0 to {problem.max_points}" + (
            f" and one of {sorted(levels)}" if levels else ""
        )
        # Samples are independent: ask them all at once, then read them in order.
        asked_all = await asyncio.gather(
            *(
                ask(llm, prompt, parse, step=f"judge/{i}", max_reasks=self.max_reasks, verdict_format=verdict_format)
                for i in range(self.samples)
            ),
            return_exceptions=True,
        )
        for failure in asked_all:
            if isinstance(failure, ContextLengthError):
                flags.append("judge_context_exceeded")
                return grade_of(None, f"ungraded: the judge prompt does not fit the judge's context: {failure}", [])
            if isinstance(failure, BaseException):
                raise failure
        points: list[int | None] = []
        errors: list[str] = []
        transcript: list[Completion] = []
        explanation = ""
        reasks = 0
        for asked in asked_all:
            assert not isinstance(asked, BaseException)
            transcript.extend(asked.completions)
            reasks += asked.reasks
            points.append(asked.verdict.value)
            if asked.verdict.value is None:
                errors.append(asked.verdict.reason)
            else:
                explanation = asked.text
        meta.update(sample_points=points, aggregate=self.aggregate, reasks=reasks, verdict_errors=errors)
        valid = [p for p in points if p is not None]
        if not valid:
            flags.append("no_verdict")
            return grade_of(None, "ungraded: " + "; ".join(errors), transcript)
        if len(valid) < len(points):
            flags.append("some_samples_ungraded")
        combined = statistics.median(valid) if self.aggregate == "median" else statistics.fmean(valid)
        return grade_of(float(combined), explanation, transcript)


JudgeConfig = Annotated[ProofJudge | AnswerJudge | BuiltinJudge, Field(discriminator="kind")]
"""A recipe's judge, picked by `kind`: `proof` (ProofJudge), `answer` (AnswerJudge) or `builtin`
(BuiltinJudge, the built-in domain's exact judge)."""
