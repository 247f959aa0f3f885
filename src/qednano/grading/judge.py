"""The judges: `ProofJudge` (rubric-based, 0..max_points) and `AnswerJudge` (final answers).

The GRADE stage of the EVAL and DATA flows and the RL reward all call the same judge
(`async judge.grade(problem, attempt, llm) -> Grade`). A judge is a validated config picked
in a recipe's `judges:` list by its `kind` (`JudgeConfig`, a discriminated union); its
`name` is unique per configuration and names the grades file `grades/<name>.jsonl`.

`ProofJudge` (QED-Nano section 4.1 and appendices A, E; anchor section 3.2) grades the final
proof (reasoning already removed; a DSM-style self-evaluation is cut too) in one of eight
prompt styles. Each style's template is ours, written from the published descriptions:

- `imo_proofbench`: IMO-ProofBench's ProofAutoGrader protocol: reference solution plus
  grading guidelines, verdict restricted to the levels 7/6/1/0 (with max_points m: m, m-1, 1, 0).
- `imo_gradingbench`: IMO-GradingBench's own protocol: the grader sees only the problem and
  the response and answers one of four labels (correct, almost, partial, incorrect, read as
  m, m-1, 1, 0), so the 4-class accuracy of a meta-evaluation means the benchmark's.
- `proofbench`: ProofBench (Ma et al.): the marking scheme as an advisory guide that valid
  alternative routes map onto, conservative partial credit, the larger of overlapping
  deductions only; optional reference (an anchor, its final answer authoritative).
- `proofbench_strict`: the strict ProofBench prompt the paper selected (appendix A, Table 4):
  strict adherence to the scheme, valid alternative methods mapped onto the equivalent
  checkpoints, omitted steps penalised, conservative partial credit for plausible but
  under-justified steps, the larger of overlapping deductions only. With a reference
  solution it is shown as the only valid solution (the original's with-reference variant).
- `qed_nano_train`: the RL training judge (anchor 5.4, prompt `v1`): `proofbench_strict`
  without a reference solution (never shown), verdict `<score>N</score>` on 0..max_points.
- `opc`, `gimo`, `simple`: the other prompt families of appendix E (Open Proof Corpus,
  Huang & Yang verifier, step-by-step review).

With no rubric, each style's prompt says how to grade without one (`NO_SCHEME`), and the
Grade is flagged `no_rubric`; with the reference off, no reference heading is printed.

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

from pydantic import Field, model_validator

from qednano.builtin.judge import BuiltinJudge
from qednano.config import Strict
from qednano.grading.answers import AnswerJudge
from qednano.grading.fence import fence, special_tokens_of
from qednano.grading.verdicts import ask, parse_label, parse_points, strip_self_evaluation
from qednano.llm.client import LLM
from qednano.llm.types import ContextLengthError
from qednano.prompts import PromptError, fields, render, template
from qednano.records import Attempt, Completion, Grade, Problem, content_id

log = logging.getLogger(__name__)

Style = Literal[
    "imo_proofbench", "imo_gradingbench", "proofbench", "proofbench_strict", "qed_nano_train", "opc", "gimo", "simple"
]
NEEDS_REFERENCE: frozenset[str] = frozenset({"imo_proofbench"})
"""Styles whose protocol shows the reference solution by default."""
NO_REFERENCE: frozenset[str] = frozenset({"qed_nano_train", "imo_gradingbench"})
"""Styles whose protocol never shows a reference solution."""

REFERENCE_HEADING: dict[str, str] = {
    "imo_proofbench": "# Reference solution",
    "proofbench_strict": (
        "# Reference solution\n\nThis is the only valid solution: grade the submission against it and its final answer."
    ),
}
DEFAULT_REFERENCE_HEADING = (
    "# Reference solution (one valid approach, not necessarily the only one; its final answer is authoritative)"
)
NO_SCHEME: dict[str, str] = {
    "imo_proofbench": (
        "(No problem-specific guidelines are available: use the general levels above alone, and give 1 only "
        "for progress that a complete solution clearly needs.)"
    ),
}
DEFAULT_NO_SCHEME = (
    "(No marking scheme is available. Grade the proof as a whole on the same scale: {max} for a complete and "
    "rigorous proof, 0 when it makes no substantial progress, and in between in proportion to the part of a "
    "complete solution that it proves correctly. Wherever the instructions refer to checkpoints, deductions or "
    "scheme points, apply them to the key steps a complete proof needs.)"
)


def config_name(prefix: str, config: Strict, label: str | None) -> str:
    """`<label or prefix>-<6 hex digits of the whole config>`: readable, file-name safe, unique per config."""
    digest = content_id(config.model_dump(mode="json"), length=6)
    return f"{label or prefix}-{digest}"


class ProofJudge(Strict):
    """Grade a proof against the problem's marking scheme on 0..max_points, in one prompt style."""

    kind: Literal["proof"] = "proof"
    style: Style = "proofbench_strict"
    """Prompt style; `proofbench_strict` is the prompt of the paper's training judge (`qed_nano_train` its reward form)."""
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

    @model_validator(mode="after")
    def _reference_allowed(self) -> ProofJudge:
        if self.reference and self.style in NO_REFERENCE:
            raise ValueError(f"style {self.style} never shows a reference solution; drop `reference: true`")
        return self

    @property
    def shows_reference(self) -> bool:
        return self.style in NEEDS_REFERENCE if self.reference is None else self.reference

    @property
    def verdict_tag(self) -> str:
        """The tag the style's verdict is written in."""
        return {"qed_nano_train": "score", "imo_gradingbench": "grade"}.get(self.style, "points")

    def levels(self, max_points: int) -> set[int] | None:
        """The verdicts this style allows (IMO-ProofBench: full, almost, partial, zero)."""
        four = self.style in ("imo_proofbench", "imo_gradingbench")
        return {0, 1, max_points - 1, max_points} if four else None

    def labels(self, max_points: int) -> dict[str, int] | None:
        """IMO-GradingBench's four labels as points out of `max_points`; None for styles that answer in points."""
        if self.style != "imo_gradingbench":
            return None
        return {"correct": max_points, "almost": max_points - 1, "partial": 1, "incorrect": 0}

    def prompt_for(self, problem: Problem, proof_block: str) -> tuple[str, list[str]]:
        """The judge prompt and the flags about missing inputs."""
        flags = []
        text = template(self.prompt or f"judge_{self.style}")
        used = fields(text)
        scheme = problem.rubric.strip()
        if not scheme and "marking_scheme" in used:
            flags.append("no_rubric")
            scheme = NO_SCHEME.get(self.style, DEFAULT_NO_SCHEME).format(max=problem.max_points)
        reference = ""
        if self.shows_reference:
            if problem.solution.strip():
                body = problem.solution.strip()
            else:
                flags.append("no_reference")
                body = "(No reference solution is available.)"
            reference = f"{REFERENCE_HEADING.get(self.style, DEFAULT_REFERENCE_HEADING)}\n\n{body}"
        values: dict[str, Any] = {
            "problem": problem.statement.strip(),
            "marking_scheme": scheme,
            "reference": reference,
            "proof": proof_block,
            "max_points": problem.max_points,
            "almost": problem.max_points - 1,
        }
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

        fenced = fence(proof, judge=self.name, problem_id=problem.id, special_tokens=special_tokens_of(llm.config))
        flags.extend(fenced.flags)
        if fenced.findings:
            meta["injection"] = fenced.findings
            log.warning("%s: neutralised text aimed at the grader: %s", attempt.id, "; ".join(fenced.findings))
        prompt, missing = self.prompt_for(problem, fenced.block)
        flags.extend(missing)
        levels = self.levels(problem.max_points)
        labels = self.labels(problem.max_points)
        tag = self.verdict_tag

        def parse(text: str) -> Any:
            if labels is not None:
                return parse_label(text, labels, tag=tag, fence=(fenced.begin, fenced.end))
            return parse_points(text, problem.max_points, tag=tag, levels=levels, fence=(fenced.begin, fenced.end))

        if labels is not None:
            verdict_format = f"<{tag}>L</{tag}>, where L is one of the words {', '.join(labels)}"
        else:
            verdict_format = f"<{tag}>N</{tag}>, where N is an integer from 0 to {problem.max_points}" + (
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
