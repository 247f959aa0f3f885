"""Rule-based answer equivalence: math-verify, and when its verdict can be trusted.

Used by `AnswerJudge` (`answers.py`) in the GRADE stage of answer benchmarks, before (or,
in the official mode, beside) the LLM equivalence judge. math-verify parses both answers
into sympy objects and compares them, but on the way it drops parts of an answer: units and
degree signs (`5 \\text{ cm}` is 5), percent signs, letter case (`X` is `x`), the words of
a text answer (`Alice` and `Celia` become the same product of symbols), repeated list items,
and the kind of object (the set `\\{1, 2\\}` equals the open interval `(1, 2)`, `f(x)=x`
equals `x`, `2` equals `\\{2\\}`). An "equal" that rests on any of these is not trusted:
`check()` returns it undecided, with the reason, so the LLM judge decides (or the answer
counts as incorrect where there is no judge). A "not equal" is trusted only between plain
numbers, numeric sets and intervals that parse to closed objects.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

_NUMERIC_COMMANDS = re.compile(r"\\(?:[dt]?frac|sqrt|pi|infty|cup|cdot|times|left|right|[{},;! ])")
_NUMERIC_TEXT = re.compile(r"^[0-9+\-*/^()\[\]{}.,=\s]*$")
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mbox|operatorname)\s*\{([^{}]*)\}")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_NAMED_SET = re.compile(r"\\(?:mathbb|mathbf|mathcal|Bbb)\s*\{[^{}]*\}")
_UNIT_MARKS = (
    ("degree", re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b")),
    ("percent", re.compile(r"\\%|%|\\percent\b")),
)
_MATH_WORDS = frozenset({"and", "or"})
"""Connectives math-verify reads as list separators: not a dropped part."""


@dataclass(frozen=True)
class Check:
    """math-verify's raw verdict on a pair, and what of it can be trusted."""

    raw: bool | None
    """math-verify's own verdict: True (equal), False (not equal), None (no parse or an error)."""
    decision: bool | None
    """The trusted verdict: None (undecided) when the raw one rests on something math-verify dropped."""
    reason: str = ""
    """Why a raw verdict was not trusted (empty when it was, or when there was none)."""


def plain_numeric(answer: str) -> bool:
    """True for an answer written only with numbers, arithmetic, fractions, roots, pi, sets and intervals."""
    return bool(_NUMERIC_TEXT.match(_NUMERIC_COMMANDS.sub("", answer.strip().strip("$").rstrip("."))))


def _closed(value: Any) -> bool:
    """True for a numeric sympy object (or a collection of them): no free symbols, no text."""
    if isinstance(value, list | tuple | set | frozenset):
        return bool(value) and all(_closed(v) for v in value)
    free = getattr(value, "free_symbols", None)
    return free is not None and not free


def kind(value: Any) -> str:
    """The kind of mathematical object math-verify parsed: number, expression, set, interval, tuple, ..."""
    import sympy

    if isinstance(value, str):
        return "text"
    if isinstance(value, sympy.FiniteSet | set | frozenset):
        return "set"
    if isinstance(value, sympy.Interval | sympy.Union | sympy.Complement | sympy.Intersection):
        return "interval"
    if isinstance(value, sympy.sets.fancysets.Reals | sympy.sets.fancysets.Integers | sympy.sets.fancysets.Naturals):
        return "interval"
    if isinstance(value, sympy.Set):
        return "set-builder"
    if isinstance(value, sympy.Tuple | tuple | list):
        return "tuple"
    if isinstance(value, sympy.Eq):
        return "equation"
    if isinstance(value, sympy.core.relational.Relational | sympy.And | sympy.Or | sympy.Not):
        return "relation"
    if isinstance(value, sympy.logic.boolalg.BooleanAtom):
        return "boolean"
    if isinstance(value, sympy.MatrixBase):
        return "matrix"
    if isinstance(value, sympy.Expr):
        return "number" if not value.free_symbols else "expression"
    return type(value).__name__


def _plain(answer: str) -> str:
    """`answer` with its text commands opened (their words kept) and other LaTeX commands removed."""
    s = _TEXT_COMMAND.sub(lambda m: f" {m.group(1)} ", answer)
    s = _NAMED_SET.sub(" ", s)  # \mathbb{R}: a set math-verify reads whole, not a variable R
    return _COMMAND.sub(" ", s)


def letters(answer: str) -> Counter[str]:
    """The words and variable names of an answer (case kept), outside LaTeX command names."""
    words = re.findall(r"[A-Za-z]+", _plain(answer))
    return Counter(w for w in words if w.lower() not in _MATH_WORDS)


def units(answer: str) -> set[str]:
    """The unit-like marks math-verify drops: degree and percent signs."""
    return {name for name, pattern in _UNIT_MARKS if pattern.search(answer)}


def top_level_items(answer: str) -> int:
    """How many comma-separated items the answer lists at bracket depth 0 (inside one outer `\\{...\\}`)."""
    s = answer.strip().strip("$")
    s = re.sub(r"\\left|\\right", "", s)
    if s.startswith("\\{") and s.endswith("\\}"):
        s = s[2:-2]
    depth, items = 0, 1
    i = 0
    while i < len(s):
        c = s[i]
        if s.startswith("\\{", i) or s.startswith("\\}", i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "," and depth == 0:
            items += 1
        i += 1
    return items


def dropped(gold: str, candidate: str, g: Any, c: Any) -> str:
    """Why math-verify's "equal" on this pair is not to be trusted; empty when nothing was dropped."""
    kinds = (kind(g), kind(c))
    if kinds[0] != kinds[1]:
        return f"different kinds of object ({kinds[0]} vs {kinds[1]})"
    marks = units(gold) ^ units(candidate)
    if marks:
        return f"a {' and '.join(sorted(marks))} sign on one side only"
    words_g, words_c = letters(gold), letters(candidate)
    if set(words_g) != set(words_c):
        return f"different words or variable names ({sorted(words_g)} vs {sorted(words_c)})"
    for side, value in ((gold, g), (candidate, c)):
        size = len(value) if kinds[0] == "set" and hasattr(value, "__len__") else None
        if size is not None and top_level_items(side) > size:
            return f"repeated items dropped from {side!r}"
    return ""


def check(gold: str, candidate: str) -> Check:
    """math-verify on (gold, candidate), with its verdict kept only where it rests on the whole answer."""
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
        return Check(None, None)
    try:
        equal = bool(verify(g, c, timeout_seconds=timeout))
    except Exception as err:
        log.debug("math-verify failed on %r vs %r: %s", gold, candidate, err)
        return Check(None, None)
    if equal:
        try:
            reason = dropped(gold, candidate, g[0], c[0])
        except Exception as err:  # sympy objects of unexpected shapes: do not trust the verdict
            reason = f"could not inspect the parsed answers: {err}"
        return Check(True, None, reason) if reason else Check(True, True)
    decidable = plain_numeric(gold) and plain_numeric(candidate) and _closed(g[0]) and _closed(c[0])
    if decidable:
        return Check(False, False)
    return Check(False, None, "math-verify's 'not equal' is trusted only between plain numbers, sets and intervals")


def check_answer(gold: str, candidate: str) -> bool | None:
    """The trusted math-verify verdict: True (equivalent), False (different), None (undecided)."""
    return check(gold, candidate).decision
