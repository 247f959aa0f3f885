"""The curate filters (QED-Nano section 3, "Data sources and filtering strategy"; appendix D; anchor 3.5).

Rule filters, each `problem -> reason | None` and configured in the recipe's `filters:`:

- `images`: the statement or solution relies on a picture (Asymptote, `\\includegraphics`,
  image links, "the figure below") - the model reads text only;
- `answer_in_statement`: the statement already holds the answer (`Answer: ...`, a `\\boxed{}`,
  a pasted solution);
- `short_solution`: the reference solution has fewer than `min_solution_words` words;
- `computational`: the statement asks only for a value (Compute / Find the value / How many)
  with no proof asked for, and the solution ends in a number;
- `easy_contest`: the competition, tags or path name an easy contest (`easy_contests`: AMC and
  the like, as whole words);
- `duplicate`: the same statement (after normalisation) was already kept.

The LLM quality filter (`quality:`) asks a model (GPT-5-Nano in the paper) whether the
statement is questionable, the chosen solution has gaps, or the other replies dispute it;
its flags are stored on every problem (`metadata.quality`) and problems flagged with any of
`drop_on` are dropped. A reply with no parsable verdict after `tries` asks leaves the
problem unchecked (`metadata.quality = None`); `unparsed` says whether it is kept or dropped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from qednano.config import Strict
from qednano.llm.client import LLM
from qednano.prompts import render, template
from qednano.records import Problem

log = logging.getLogger(__name__)

IMAGE = re.compile(
    r"\[asy\]|\\includegraphics|<img\b|!\[[^\]]*\]\(|https?://\S+\.(?:png|jpe?g|gif|svg)\b|\\begin\{tikzpicture\}"
    r"|\b(?:see|in|shown in|from) the (?:figure|diagram|picture|image)\b|\b(?:figure|diagram|picture) (?:below|above)\b",
    re.I,
)
ANSWER_GIVEN = re.compile(
    r"\\boxed\{|\b(?:answer|ans\.|final answer)\s*(?:is\s*)?[:=]|(?:^|\n)\s*\**\s*(?:solution|proof)\s*\**\s*[:.]", re.I
)
PROOF_ASKED = re.compile(
    r"\b(?:prove|proof|show|demonstrate|justify|determine all|find all|characteri[sz]e|does there exist|"
    r"is it (?:true|possible)|exists?|for which|disprove)\b",
    re.I,
)
VALUE_ASKED = re.compile(
    r"\b(?:compute|calculate|evaluate|simplify|find the (?:value|sum|number|product|area|length|remainder|"
    r"smallest|largest|maximum|minimum)|how many|what is)\b",
    re.I,
)
NUMERIC_END = re.compile(r"\\boxed\{\s*-?[\d.,/\\{}a-z ]{1,20}\}|(?:answer is|=)\s*\$?-?\d[\d.,/]*\$?\s*\.?\s*$", re.I)
Flag = Literal["incomplete", "gaps", "wrong", "disagreement", "computational"]
FLAGS: tuple[Flag, ...] = ("incomplete", "gaps", "wrong", "disagreement", "computational")
DEFAULT_DROP: tuple[Flag, ...] = ("incomplete", "gaps", "wrong", "disagreement")


class RuleFilters(Strict):
    """Which rule filters run, and their settings (set a filter to false or 0 to switch it off)."""

    images: bool = True
    answer_in_statement: bool = True
    min_solution_words: int = Field(default=30, ge=0)
    """`short_solution`: drop problems whose reference solution has fewer words (0: off)."""
    computational: bool = True
    easy_contests: list[str] = Field(default_factory=lambda: ["AMC", "AHSME", "AJHSME", "MATHCOUNTS"])
    """`easy_contest`: contest names matched as whole words, case-insensitive, in competition, tags and path."""
    duplicates: bool = True


def has_image(problem: Problem) -> str | None:
    match = IMAGE.search(problem.statement) or IMAGE.search(problem.solution)
    return f"relies on an image ({match.group(0)!r})" if match else None


def gives_answer(problem: Problem) -> str | None:
    match = ANSWER_GIVEN.search(problem.statement)
    return f"the statement gives the answer away ({match.group(0).strip()!r})" if match else None


def short_solution(min_words: int) -> Callable[[Problem], str | None]:
    def check(problem: Problem) -> str | None:
        words = len(problem.solution.split())
        return f"solution has {words} words (< {min_words})" if words < min_words else None

    return check


def computational(problem: Problem) -> str | None:
    if PROOF_ASKED.search(problem.statement) or not VALUE_ASKED.search(problem.statement):
        return None
    numeric = NUMERIC_END.search(problem.solution.strip()) or re.fullmatch(r"-?[\d.,/]+", problem.answer.strip())
    return "asks only for a value, and the solution is a computation" if numeric else None


def easy_contest(contests: list[str]) -> Callable[[Problem], str | None]:
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(c) for c in contests) + r")\b", re.I) if contests else None

    def check(problem: Problem) -> str | None:
        if pattern is None:
            return None
        meta = problem.metadata
        where = [str(meta.get("competition") or ""), str(meta.get("path") or ""), *map(str, meta.get("tags") or [])]
        for value in where:
            match = pattern.search(value)
            if match:
                return f"easy contest {match.group(0)!r} ({value})"
        return None

    return check


def rule_filters(config: RuleFilters) -> list[tuple[str, Callable[[Problem], str | None]]]:
    """The enabled rule filters, in funnel order, by name (duplicates are handled by `curate`)."""
    out: list[tuple[str, Callable[[Problem], str | None]]] = []
    if config.images:
        out.append(("images", has_image))
    if config.answer_in_statement:
        out.append(("answer_in_statement", gives_answer))
    if config.min_solution_words:
        out.append(("short_solution", short_solution(config.min_solution_words)))
    if config.computational:
        out.append(("computational", computational))
    if config.easy_contests:
        out.append(("easy_contest", easy_contest(config.easy_contests)))
    return out


# ---------------------------------------------------------------------------- the LLM quality filter


class QualityFilter(Strict):
    """The paper's LLM quality pass (appendix D); needs `models.filter` in the recipe."""

    enabled: bool = True
    drop_on: list[Flag] = Field(default_factory=lambda: list(DEFAULT_DROP))
    """Flags that drop a problem. The paper removed questionable statements, disputed solutions and
    gapped proofs, and did not use the difficulty and `computational` answers (too noisy)."""
    tries: int = Field(default=2, ge=1, le=10)
    """Asks per problem until the reply holds a parsable verdict."""
    unparsed: Literal["keep", "drop"] = "keep"
    """What happens to a problem whose verdict could not be parsed (it is counted either way)."""
    max_comments: int = Field(default=5, ge=0)
    """Other replies (`metadata.candidates`) shown to the model."""
    prompt: str | None = None
    """A custom template file (placeholders `problem`, `solution`, `comments`) instead of `filter_quality`."""


def parse_quality(reply: str) -> dict[str, Any] | None:
    """The verdict object of a reply: the last fenced ```json block, else the last {...}; None if unusable."""
    blocks = re.findall(r"```(?:json)?\s*(\{.*?\})\s*```", reply, re.S)
    candidates = blocks[-1:] or re.findall(r"\{[^{}]*\}", reply)[-1:]
    for raw in candidates:
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(value, dict) or not all(isinstance(value.get(f), bool) for f in FLAGS):
            return None
        difficulty = value.get("difficulty")
        ok = isinstance(difficulty, int) and not isinstance(difficulty, bool) and 1 <= difficulty <= 10
        return {**{f: value[f] for f in FLAGS}, "difficulty": difficulty if ok else None}
    return None


async def assess(problem: Problem, llm: LLM, config: QualityFilter) -> dict[str, Any] | None:
    """Ask the filter model about one problem, at most `config.tries` times; the parsed flags, or None."""
    comments = [str(c) for c in problem.metadata.get("candidates") or []][: config.max_comments]
    prompt = render(
        template(config.prompt or "filter_quality"),
        problem=problem.statement,
        solution=problem.solution or "(none given)",
        comments="\n\n".join(f"Comment:\n{c}" for c in comments) or "(none)",
    )
    for attempt in range(config.tries):
        completion = await llm.complete([{"role": "user", "content": prompt}], step=f"quality/{attempt}")
        verdict = parse_quality(completion.text)
        if verdict is not None:
            return verdict
        log.info("%s: quality verdict not parsable (try %d of %d)", problem.id, attempt + 1, config.tries)
    return None


def quality_reason(verdict: dict[str, Any] | None, config: QualityFilter) -> str | None:
    """Why a problem is dropped given its verdict, or None to keep it."""
    if verdict is None:
        return "no parsable quality verdict" if config.unparsed == "drop" else None
    flagged = [f for f in config.drop_on if verdict.get(f)]
    return f"flagged: {', '.join(flagged)}" if flagged else None
