"""Final-answer checking for IMO-AnswerBench-style problems: extract, rules, then an LLM judge.

The GRADE stage for answer problems (eval-anchors section 4, anchor section 3.6). The
official IMO-AnswerBench grader is an LLM judge because rule-based checkers reject valid
answer forms (the RC paper found math-verify under-estimates) and, as `equivalence.py`
shows, accept some invalid ones. `AnswerJudge` works in one of two modes:

- `official` (the paper recipes): every answer goes to the LLM judge, as IMO-Bench's
  AnswerAutoGrader does; the rules' verdict (the *shortcut*) is computed too and recorded
  beside the judge's, so the shortcut's agreement with the judge is measured, not assumed
  (`shortcut_agreement`).
- `shortcut` (cheap runs): the rules decide what they can and only the rest is asked.

The steps:

1. **Extract** the final answer (`final_answer`): the last `\\boxed{...}`/`\\fbox{...}` with
   nested braces; several boxes on the last line that has one are joined with commas (list
   answers); inner boxes are unwrapped. With no box, the last five lines are the candidate
   and the Grade is flagged `no_boxed_answer`.
2. **Exact match** after light normalisation.
3. **math-verify** (`equivalence.check`): its "equal" counts only when it rests on the whole
   answer (same kind of object, nothing dropped: units, case, words, repeated items), its
   "not equal" only between plain numbers, numeric sets and intervals; anything else is
   undecided, with the reason in `math_verify_note`.
4. **LLM equivalence judge** (`judge_answer.md`, our prompt), with the same strict parsing
   and bounded re-asks as the proof judge: `<verdict>Correct</verdict>` or
   `<verdict>Incorrect</verdict>`, else ungraded. Without a judge (`llm_fallback: false`,
   shortcut mode only) an undecided answer counts as incorrect.

Points are 1 (correct) or 0 (incorrect) with `max_points=1`, so `Grade.score` is the
accuracy. `Grade.metadata`: `mode`; `decided_by`, what decided: `exact`, `math_verify`,
`llm`, `no_judge` (undecided and no judge to ask: incorrect), `empty`, or `none` when the
problem has no reference answer (ungraded); `extracted`, `gold`; `math_verify` (its raw
verdict, True, False or None) and `math_verify_note` (why it was not trusted); `shortcut`
(what exact match and math-verify decide: True, False or None); `llm_verdict`, `reasks`;
and in the official mode `shortcut_agrees` (None when the shortcut is undecided or the
judge gave no verdict).
"""

from __future__ import annotations

import logging
import re
from typing import Any, Literal

from pydantic import Field, model_validator

from qednano.config import Strict
from qednano.grading.equivalence import check, check_answer, plain_numeric
from qednano.grading.fence import fence, special_tokens_of
from qednano.grading.verdicts import ask, parse_correct, strip_self_evaluation
from qednano.llm.client import LLM
from qednano.llm.types import ContextLengthError
from qednano.prompts import render, template
from qednano.records import Attempt, Completion, Grade, Problem, content_id

log = logging.getLogger(__name__)

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


def boxes(text: str) -> list[tuple[int, str]]:
    """Every top-level `\\boxed{...}` / `\\fbox{...}` as (start offset, content), braces matched."""
    out: list[tuple[int, str]] = []
    pos = 0
    while (m := _BOX.search(text, pos)) is not None:
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
                i += 2
                continue
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth:  # unbalanced: the box never closes
            break
        out.append((m.start(), text[m.end() : i - 1]))
        pos = i
    return out


def unbox(content: str) -> str:
    """Content with inner `\\boxed{...}` wrappers removed (their contents kept)."""
    while inner := boxes(content):
        start, body = inner[0]
        end = start + content[start:].index("{") + 1 + len(body) + 1
        content = content[:start] + body + content[end:]
    return content


def final_answer(text: str) -> str | None:
    """The final boxed answer: every box on the last line holding one, joined by ", "; None without a box."""
    found = boxes(text)
    if not found:
        return None
    line_of = [text.count("\n", 0, start) for start, _ in found]
    last = line_of[-1]
    parts = [unbox(body).strip() for (_, body), line in zip(found, line_of, strict=True) if line == last]
    return ", ".join(p for p in parts if p) or None


def normalise(answer: str) -> str:
    """Light normalisation for an exact-match shortcut: no `$`, spacing, `\\left`/`\\right` or end period."""
    s = answer.strip().rstrip(".").strip().strip("$").strip()
    s = re.sub(r"\\(?:left|right)\b|\\[,;:! ]|\\displaystyle", "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\s+", "", s)
    return s.rstrip(".").lower()


__all__ = ["AnswerJudge", "boxes", "check_answer", "final_answer", "normalise", "plain_numeric", "unbox"]


class AnswerJudge(Strict):
    """Check a final answer against `Problem.answer`: exact match and math-verify, and an LLM judge."""

    kind: Literal["answer"] = "answer"
    mode: Literal["official", "shortcut"] = "shortcut"
    """`official`: the LLM judge decides every answer (IMO-Bench's protocol) and the rules' verdict is
    recorded beside it; `shortcut`: the rules decide what they can, the judge only the rest."""
    llm_fallback: bool = True
    """Shortcut mode: ask the LLM judge when the rules cannot decide; False: undecided counts as incorrect."""
    max_reasks: int = Field(2, ge=0, le=10)
    """Re-asks when the LLM judge's reply has no usable verdict; then the answer is ungraded."""
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Readable prefix of `name` (default `answer`); the config hash is always appended."""

    @model_validator(mode="after")
    def _official_needs_the_judge(self) -> AnswerJudge:
        if self.mode == "official" and not self.llm_fallback:
            raise ValueError(
                "mode official asks the LLM judge for every answer; llm_fallback: false needs mode shortcut"
            )
        return self

    @property
    def name(self) -> str:
        config = self.model_dump(mode="json")
        if config["mode"] == "shortcut":  # the mode before there were two: names (grades files) stay as they were
            del config["mode"]
        return f"{self.label or 'answer'}-{content_id(config, length=6)}"

    async def grade(self, problem: Problem, attempt: Attempt, llm: LLM) -> Grade:
        """Grade one attempt's final answer; an `LLMError` from the judge call propagates."""
        text = strip_self_evaluation(attempt.proof)
        flags: list[str] = ["truncated_attempt"] if attempt.truncated else []
        meta: dict[str, Any] = {"mode": self.mode, "gold": problem.answer}

        def grade_of(points: int | None, decided_by: str, explanation: str, calls: list[Completion]) -> Grade:
            meta["decided_by"] = decided_by
            return Grade(
                attempt_id=attempt.id,
                problem_id=problem.id,
                judge=self.name,
                points=points,
                max_points=1,
                explanation=explanation,
                flags=flags,
                transcript=calls,
                metadata=meta,
            )

        if not text.strip():
            flags.append("empty_proof")
            return grade_of(0, "empty", "The attempt contains no answer.", [])
        if not problem.answer.strip():
            flags.append("no_reference_answer")
            return grade_of(None, "none", "ungraded: the problem has no reference answer.", [])
        extracted = final_answer(text)
        if extracted is None:
            flags.append("no_boxed_answer")
            candidate = "...\n" + "\n".join(text.strip().splitlines()[-5:])
        else:
            candidate = extracted
        meta["extracted"] = extracted
        exact = extracted is not None and normalise(extracted) == normalise(problem.answer)
        rules = check(problem.answer, extracted) if extracted is not None and not exact else None
        meta["math_verify"] = rules.raw if rules else None
        if rules and rules.reason:
            meta["math_verify_note"] = rules.reason
        shortcut: bool | None = True if exact else rules.decision if rules else None
        meta["shortcut"] = shortcut
        if self.mode == "shortcut":
            if exact:
                return grade_of(1, "exact", "The answer matches the reference exactly.", [])
            if shortcut is not None:
                word = "equivalent" if shortcut else "not equivalent"
                return grade_of(int(shortcut), "math_verify", f"math-verify: {word}.", [])
            if not self.llm_fallback:
                why = rules.reason if rules and rules.reason else "math-verify could not decide"
                return grade_of(0, "no_judge", f"undecided by the rules ({why}) and no judge to ask: incorrect.", [])

        tokens = special_tokens_of(llm.config)
        fenced = fence(candidate, judge=self.name, problem_id=problem.id, what="ANSWER", special_tokens=tokens)
        flags.extend(fenced.flags)
        if fenced.findings:
            meta["injection"] = fenced.findings
        prompt = render(template("judge_answer"), problem=problem.statement, gold=problem.answer, answer=fenced.block)
        try:
            asked = await ask(
                llm,
                prompt,
                lambda reply: parse_correct(reply, fence=(fenced.begin, fenced.end)),
                step="judge/answer",
                max_reasks=self.max_reasks,
                verdict_format="the single word Correct or Incorrect between the tags <verdict> and </verdict>",
            )
        except ContextLengthError as err:
            flags.append("judge_context_exceeded")
            return grade_of(None, "llm", f"ungraded: the judge prompt does not fit the judge's context: {err}", [])
        verdict = asked.verdict.value
        meta.update(llm_verdict=verdict, reasks=asked.reasks)
        if self.mode == "official":
            meta["shortcut_agrees"] = None if shortcut is None or verdict is None else shortcut == verdict
        if verdict is None:
            flags.append("no_verdict")
            return grade_of(None, "llm", "ungraded: " + asked.verdict.reason, asked.completions)
        return grade_of(int(verdict), "llm", asked.text, asked.completions)


def shortcut_agreement(grades: list[Grade]) -> dict[str, float | int | None]:
    """How often the rules' verdict matched the LLM judge's, over official-mode grades where both decided.

    `decided` counts the answers the shortcut would have decided alone, `agree` those where
    it agreed with the judge, `rate` is agree/decided (None when nothing was decided), and
    `undecided` the answers the shortcut would have had to send to the judge anyway.
    """
    pairs = [g.metadata.get("shortcut_agrees") for g in grades if g.metadata.get("mode") == "official"]
    undecided = sum(1 for g in grades if g.metadata.get("mode") == "official" and g.metadata.get("shortcut") is None)
    decided = [p for p in pairs if p is not None]
    agree = sum(1 for p in decided if p)
    return {
        "decided": len(decided),
        "agree": agree,
        "rate": agree / len(decided) if decided else None,
        "undecided": undecided,
    }
