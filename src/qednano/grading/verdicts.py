"""Reading a judge's verdict out of its reply, strictly, and asking again when there is none.

Used by every judge (`judge.py`, `answers.py`) in the GRADE stage of the EVAL and DATA
flows and by the RL reward. The rules are written down here because graders in the wild
get them wrong (the QED-Nano eval read only the first character of the *last* `<points>`
tag, and its training judge turned a missing tag into a trained-on zero):

1. Only the judge's own final text is read (`Completion.text`: reasoning removed), and any
   region fenced with the call's proof markers is cut out first, so text the judge quotes
   from the proof can never supply the verdict (see `fence.py`).
2. The verdict is the **last** complete `<tag>...</tag>` pair: the judge's final word.
   An opening tag with no closing tag after it, or no tag at all, is no verdict.
3. The content must be a bare integer, optionally written `N out of M`, `N/M` or
   `N points`, wrapped in at most `**bold**` or `$math$`. Decimals, words, negative
   numbers, ranges and several numbers are rejected, never rounded or truncated.
4. The integer must lie in `0..max_points` and, for styles with a fixed set of levels
   (IMO-ProofBench: 0/1/6/7), be one of them. A stated denominator must equal max_points.
5. Anything else gives `points=None` with the reason; the caller may re-ask a bounded
   number of times (`ask()`), and an answer that stays malformed stays ungraded, never 0.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from qednano.llm.client import LLM
from qednano.prompts import render, template
from qednano.records import Completion

log = logging.getLogger(__name__)

V = TypeVar("V")

_NUMBER = re.compile(r"^(\d{1,3})(?:\s*(?:out\s+of|/)\s*(\d{1,3}))?(?:\s*(?:points?|pts?))?\.?$", re.IGNORECASE)
_WRAPPERS = (("**", "**"), ("*", "*"), ("$", "$"), ("`", "`"), ("\\(", "\\)"), ("\\boxed{", "}"), ("\\text{", "}"))
_SELF_EVAL = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*|\*\*[ \t]*)(?:self[- ]?evaluation|final[ \t]+evaluation)\b.*",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)


@dataclass(frozen=True)
class Verdict(Generic[V]):
    """A parsed verdict: `value` is None when the reply has no usable one, and `reason` says why."""

    value: V | None
    reason: str = ""


def strip_self_evaluation(text: str) -> str:
    """Cut a self-evaluation section (DSM-style `## Self Evaluation`, `# Final Evaluation`) and all after it.

    The QED-Nano eval grades the proof only, so a model's own verdict on it is removed
    (anchor 3.1, `remove_self_evaluation`). The heading must start a line.
    """
    return _SELF_EVAL.sub("", text).rstrip()


def last_tag(text: str, tag: str) -> Verdict[str]:
    """The content of the last complete `<tag>...</tag>` pair (case-insensitive), stripped."""
    opens = list(re.finditer(rf"<\s*{tag}\s*>", text, re.IGNORECASE))
    if not opens:
        return Verdict(None, f"no <{tag}> tag")
    start = opens[-1]
    close = re.search(rf"<\s*/\s*{tag}\s*>", text[start.end() :], re.IGNORECASE)
    if close is None:
        return Verdict(None, f"the last <{tag}> tag is never closed")
    return Verdict(text[start.end() : start.end() + close.start()].strip())


def unwrap(value: str) -> str:
    """Strip at most two layers of emphasis or math wrapping around a verdict."""
    for _ in range(2):
        for left, right in _WRAPPERS:
            if len(value) > len(left) + len(right) - 1 and value.startswith(left) and value.endswith(right):
                value = value[len(left) : len(value) - len(right)].strip()
                break
    return value


def cut_fenced(text: str, begin: str | None, end: str | None) -> str:
    """`text` without any region between the call's fence markers (a quoted proof)."""
    if not begin or not end:
        return text
    pattern = re.compile(re.escape(begin) + r".*?(?:" + re.escape(end) + r"|\Z)", re.DOTALL)
    return pattern.sub("", text)


def parse_points(
    text: str,
    max_points: int,
    *,
    tag: str = "points",
    levels: Collection[int] | None = None,
    fence: tuple[str, str] | None = None,
) -> Verdict[int]:
    """The judge's points: the last `<tag>` holding an integer in 0..max_points (and in `levels`).

    Never raises; returns `Verdict(None, reason)` for anything that is not a clean verdict.
    """
    if not isinstance(text, str) or not text.strip():
        return Verdict(None, "empty reply")
    body = cut_fenced(text, *(fence or (None, None)))
    found = last_tag(body, tag)
    if found.value is None:
        return Verdict(None, found.reason)
    raw = unwrap(found.value)
    match = _NUMBER.match(raw)
    if match is None:
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        return Verdict(None, f"<{tag}> holds {shown!r}, not an integer")
    points = int(match.group(1))
    if match.group(2) is not None and int(match.group(2)) != max_points:
        return Verdict(None, f"<{tag}> says out of {match.group(2)}, expected out of {max_points}")
    if points > max_points:
        return Verdict(None, f"<{tag}> {points} is above the maximum {max_points}")
    if levels is not None and points not in levels:
        return Verdict(None, f"<{tag}> {points} is not one of the allowed levels {sorted(levels)}")
    return Verdict(points)


def parse_correct(text: str, *, tag: str = "verdict", fence: tuple[str, str] | None = None) -> Verdict[bool]:
    """An equivalence verdict: the last `<tag>` holding exactly `correct` or `incorrect` (any case).

    Unlike the QED-Nano parser (anything without "incorrect" counted as correct), any other
    content, or no tag, is no verdict.
    """
    if not isinstance(text, str) or not text.strip():
        return Verdict(None, "empty reply")
    found = last_tag(cut_fenced(text, *(fence or (None, None))), tag)
    if found.value is None:
        return Verdict(None, found.reason)
    word = unwrap(found.value).strip(" .!").lower()
    if word in ("correct", "incorrect"):
        return Verdict(word == "correct")
    shown = word if len(word) <= 40 else word[:37] + "..."
    return Verdict(None, f"<{tag}> holds {shown!r}, not Correct or Incorrect")


def parse_label(
    text: str, labels: dict[str, int], *, tag: str = "grade", fence: tuple[str, str] | None = None
) -> Verdict[int]:
    """A label verdict (IMO-GradingBench: correct / almost / partial / incorrect) as its points.

    The last `<tag>` must hold exactly one of `labels` (any case, at most bold or math
    wrapping); anything else, or no tag, is no verdict.
    """
    if not isinstance(text, str) or not text.strip():
        return Verdict(None, "empty reply")
    found = last_tag(cut_fenced(text, *(fence or (None, None))), tag)
    if found.value is None:
        return Verdict(None, found.reason)
    word = unwrap(found.value).strip(" .!").lower()
    if word in labels:
        return Verdict(labels[word])
    shown = word if len(word) <= 40 else word[:37] + "..."
    return Verdict(None, f"<{tag}> holds {shown!r}, not one of {', '.join(labels)}")


@dataclass
class Asked(Generic[V]):
    """What `ask()` got: the verdict, the final reply text, every completion and the re-asks made."""

    verdict: Verdict[V]
    text: str
    completions: list[Completion] = field(default_factory=list)
    reasks: int = 0
    errors: list[str] = field(default_factory=list)


async def ask(
    llm: LLM,
    prompt: str,
    parse: Callable[[str], Verdict[V]],
    *,
    step: str,
    max_reasks: int,
    verdict_format: str,
    **params: Any,
) -> Asked[V]:
    """Send `prompt`; while the reply has no usable verdict, re-ask at most `max_reasks` times.

    A reply that is complete but malformed is followed up in the same conversation (cheap:
    the judge only restates its verdict); an empty or truncated reply is asked afresh. Each
    re-ask parses only the new reply. `LLMError` propagates: a failed call is not a verdict.
    """
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    out: Asked[V] = Asked(Verdict(None, "not asked"), "")
    for round_ in range(max_reasks + 1):
        name = step if round_ == 0 else f"{step}/reask{round_}"
        completion = await llm.complete(messages, step=name, **params)
        out.completions.append(completion)
        out.text = completion.text
        out.verdict = parse(completion.text)
        if out.verdict.value is not None:
            return out
        reason = out.verdict.reason + (" (reply truncated)" if completion.truncated else "")
        out.errors.append(reason)
        log.info("%s: no usable verdict (%s)", name, reason)
        if round_ == max_reasks:
            break
        out.reasks += 1
        if completion.truncated or not completion.text.strip():
            messages = [{"role": "user", "content": prompt}]
        else:
            follow_up = render(template("judge_reask"), reason=out.verdict.reason, verdict_format=verdict_format)
            messages = [
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": follow_up},
            ]
    out.verdict = Verdict(None, "; ".join(out.errors))
    return out
