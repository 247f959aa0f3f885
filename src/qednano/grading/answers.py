"""Final-answer checking for IMO-AnswerBench-style problems: extract, math-verify, then an LLM judge.

The GRADE stage for answer problems (eval-anchors section 4, anchor section 3.6). The
official IMO-AnswerBench grader is an LLM judge because rule-based checkers reject valid
answer forms (the RC paper found math-verify under-estimates); an LLM judge costs a call
per answer. `AnswerJudge` therefore does both, in order:

1. **Extract** the final answer (`final_answer`): the last `\\boxed{...}`/`\\fbox{...}` with
   nested braces; several boxes on the last line that has one are joined with commas (list
   answers); inner boxes are unwrapped. With no box, the last five lines are the candidate
   and the Grade is flagged `no_boxed_answer`.
2. **Exact match** after light normalisation decides `correct` at once.
3. **math-verify** (`check_answer`): `True` decides correct. `False` decides incorrect only
   when both sides are written as plain numbers, numeric sets or intervals and parse to
   closed objects (no free symbols, no units), where its comparison is reliable; otherwise
   the answer is undecided.
4. **LLM equivalence judge** (`judge_answer.md`, our prompt) for what is undecided, with the
   same strict parsing and bounded re-asks as the proof judge: `<verdict>Correct</verdict>`
   or `<verdict>Incorrect</verdict>`, else ungraded.

Points are 1 (correct) or 0 (incorrect) with `max_points=1`, so `Grade.score` is the
accuracy. `Grade.metadata`: `decided_by` (`exact`, `math_verify`, `llm`, `empty`, or `none`
when the problem has no reference answer: ungraded),
`extracted`, `gold`, `math_verify` (True, False or None), `llm_verdict`, `reasks`.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Literal

from pydantic import Field

from qednano.config import Strict
from qednano.grading.fence import fence
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


_NUMERIC_COMMANDS = re.compile(r"\\(?:[dt]?frac|sqrt|pi|infty|cup|cdot|times|left|right|[{},;! ])")
_NUMERIC_TEXT = re.compile(r"^[0-9+\-*/^()\[\]{}.,=\s]*$")


def plain_numeric(answer: str) -> bool:
    """True for an answer written only with numbers, arithmetic, fractions, roots, pi, sets and intervals.

    math-verify normalises units away (`60^\\circ` becomes 60) and reads words as products of
    symbols, so its "not equal" is trusted only between answers of this plain form.
    """
    return bool(_NUMERIC_TEXT.match(_NUMERIC_COMMANDS.sub("", answer.strip().strip("$").rstrip("."))))


def _closed(value: Any) -> bool:
    """True for a numeric sympy object (or a collection of them): no free symbols, no text."""
    if isinstance(value, list | tuple | set | frozenset):
        return bool(value) and all(_closed(v) for v in value)
    free = getattr(value, "free_symbols", None)
    return free is not None and not free


def check_answer(gold: str, candidate: str) -> bool | None:
    """math-verify's verdict: True (equivalent), False (both numeric and different), None (undecided)."""
    from math_verify import parse, verify
    from math_verify.parser import ExprExtractionConfig, LatexExtractionConfig

    # math-verify's timeouts use SIGALRM, which only the main thread may set.
    timeout: int | None = 5 if threading.current_thread() is threading.main_thread() else None
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]

    def parsed(s: str) -> list[Any]:
        s = s.strip().rstrip(".")
        try:
            return parse(s if "$" in s else f"${s}$", config, parsing_timeout=timeout)  # type: ignore[arg-type]
        except Exception as err:  # math-verify can raise from deep inside sympy
            log.debug("math-verify could not parse %r: %s", s, err)
            return []

    g, c = parsed(gold), parsed(candidate)
    if not g or not c:
        return None
    try:
        if verify(g, c, timeout_seconds=timeout):
            return True
    except Exception as err:
        log.debug("math-verify failed on %r vs %r: %s", gold, candidate, err)
        return None
    decidable = plain_numeric(gold) and plain_numeric(candidate) and _closed(g[0]) and _closed(c[0])
    return False if decidable else None


class AnswerJudge(Strict):
    """Check a final answer against `Problem.answer`: exact match, math-verify, then an LLM judge."""

    kind: Literal["answer"] = "answer"
    llm_fallback: bool = True
    """Ask the LLM judge when math-verify cannot decide; False: undecided answers count as incorrect."""
    max_reasks: int = Field(2, ge=0, le=10)
    """Re-asks when the LLM judge's reply has no usable verdict; then the answer is ungraded."""
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Readable prefix of `name` (default `answer`); the config hash is always appended."""

    @property
    def name(self) -> str:
        return f"{self.label or 'answer'}-{content_id(self.model_dump(mode='json'), length=6)}"

    async def grade(self, problem: Problem, attempt: Attempt, llm: LLM) -> Grade:
        """Grade one attempt's final answer; an `LLMError` from the judge call propagates."""
        text = strip_self_evaluation(attempt.proof)
        flags: list[str] = ["truncated_attempt"] if attempt.truncated else []
        meta: dict[str, Any] = {"gold": problem.answer}

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
        if extracted is not None and normalise(extracted) == normalise(problem.answer):
            meta["math_verify"] = None
            return grade_of(1, "exact", "The answer matches the reference exactly.", [])
        verdict = check_answer(problem.answer, extracted) if extracted is not None else None
        meta["math_verify"] = verdict
        if verdict is not None or not self.llm_fallback:
            ok = bool(verdict)
            return grade_of(int(ok), "math_verify", f"math-verify: {'equivalent' if ok else 'not equivalent'}.", [])

        fenced = fence(candidate, judge=self.name, problem_id=problem.id, what="ANSWER")
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
        meta.update(llm_verdict=asked.verdict.value, reasks=asked.reasks)
        if asked.verdict.value is None:
            flags.append("no_verdict")
            return grade_of(None, "llm", "ungraded: " + asked.verdict.reason, asked.completions)
        return grade_of(int(asked.verdict.value), "llm", asked.text, asked.completions)
