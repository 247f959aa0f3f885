"""Rubrics (marking schemes): writing them with an LLM, checking them, and normalising dataset ones.

The `rubrics` stage of the DATA flow (problems -> problems+rubric), QED-Nano section 3
("Grading schemes", after Ma et al. 2026; anchor section 3.4): every training problem gets a
marking scheme scoring 0..7 with (1) checkpoints for partial progress, (2) zero-credit
items and (3) deductions. The judge (`judge.py`) reads the rubric as text, so a rubric is
text, in one canonical form that `write_rubric` asks for and the normalisers produce:

```
## Checkpoints (7 pts total)
1. [2 pts] Title: what earns the points.
...
Total (max 7)

## Zero-credit items
- ...

## Deductions
- -1: ...
- Cap at 5/7: ...
```

Parallel solution routes are lines `Chain A: ...`, `Chain B: ...` inside the checkpoints;
checkpoints before the first chain line count for every chain, a proof is scored on one
chain, and the best chain must reach exactly the maximum (none may exceed it).
`check_rubric` enforces the sections, the point sum and the chains, and says why a rubric
is rejected; `write_rubric` re-asks with that reason a bounded number of times.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from qednano.llm.client import LLM
from qednano.llm.types import LLMError
from qednano.prompts import render, template
from qednano.records import Problem

log = logging.getLogger(__name__)

_HEADING = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*|\*\*[ \t]*|\d+\.[ \t]*\**[ \t]*)?(checkpoints|zero[- ]credit|deductions)\b(.*)$",
    re.I | re.M,
)
_POINTS = re.compile(
    r"[\[(]\s*(\d+(?:\.\d+)?)\s*(?:pts?|points?)\s*[\])]|\b(\d+(?:\.\d+)?)\s*(?:pts?|points?)\s*[:\-–—]", re.I
)
_ITEM = re.compile(r"^[ \t]*(?:[-*+•]|\d+[.)]|\(\w+\))[ \t]+\S", re.M)
_CHAIN = re.compile(r"^[ \t]*(?:[-*]\s*)?\**[ \t]*chain[ \t]+([A-Z0-9])\b", re.I | re.M)
_TOTAL = re.compile(r"^[ \t]*\**[ \t]*total\b[^\n]*?(\d+)", re.I | re.M)
_OTHER_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+(?![^\n]*\bchain\b)", re.I | re.M)
_NONE = re.compile(r"^\s*[-*]\s*none\b", re.I | re.M)
MAX_CHECKPOINTS = 20


class RubricError(LLMError):
    """The model wrote no rubric that passes `check_rubric` in its tries (a failed call, like any LLMError)."""


@dataclass
class RubricCheck:
    """The result of `check_rubric`: ok, or the reasons it is rejected, and the checkpoint points found."""

    ok: bool
    reasons: list[str] = field(default_factory=list)
    points: list[int] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


def sections(text: str) -> dict[str, str]:
    """The body of each of the three sections, keyed `checkpoints`, `zero`, `deductions` (first of each)."""
    found: list[tuple[str, int, int]] = []
    for m in _HEADING.finditer(text):
        key = m.group(1).lower().split("-")[0].split(" ")[0]
        key = "zero" if key.startswith("zero") else key
        if key not in {k for k, _, _ in found}:
            found.append((key, m.start(), m.end()))
    out = {}
    for i, (key, _, end) in enumerate(found):
        stop = found[i + 1][1] if i + 1 < len(found) else len(text)
        other = _OTHER_HEADING.search(text, end, stop)
        out[key] = text[end : other.start() if other else stop].strip("\n")
    return out


def check_rubric(text: str, max_points: int = 7) -> RubricCheck:
    """Validate a rubric's structure and point sum; every problem found is a reason."""
    reasons: list[str] = []
    if not isinstance(text, str) or not text.strip():
        return RubricCheck(False, ["the rubric is empty"])
    parts = sections(text)
    for key, title in (("checkpoints", "Checkpoints"), ("zero", "Zero-credit items"), ("deductions", "Deductions")):
        if key not in parts:
            reasons.append(f"missing section '{title}'")
    order = [m.group(1).lower()[:4] for m in _HEADING.finditer(text)]
    firsts = [k for i, k in enumerate(order) if k not in order[:i]]
    if len(firsts) == 3 and firsts != ["chec", "zero", "dedu"]:
        reasons.append("sections must come in the order Checkpoints, Zero-credit items, Deductions")
    points: list[int] = []
    body = parts.get("checkpoints", "")
    chains: dict[str, int] = {}
    common = 0
    current: str | None = None
    for line in body.splitlines():
        chain = _CHAIN.match(line)
        if chain:
            current = chain.group(1).upper()
            chains.setdefault(current, 0)
        if _TOTAL.match(line):
            continue
        found = _POINTS.search(line)
        if not found:
            continue
        raw = found.group(1) or found.group(2)
        if "." in raw:
            reasons.append(f"checkpoint points must be whole numbers, got {raw} in {line.strip()[:60]!r}")
            continue
        value = int(raw)
        if value <= 0:
            reasons.append(f"a checkpoint worth {value} points: {line.strip()[:60]!r}")
            continue
        points.append(value)
        if current is None:
            common += value
        else:
            chains[current] += value
    if "checkpoints" in parts:
        if not points:
            reasons.append("no checkpoint carries points (write them as '[2 pts]')")
        elif len(points) > MAX_CHECKPOINTS:
            reasons.append(f"{len(points)} checkpoints: over-fragmented (at most {MAX_CHECKPOINTS})")
        totals = {c: common + v for c, v in chains.items()} or {"": common}
        over = {c: t for c, t in totals.items() if t > max_points}
        if points and over:
            reasons.append(
                ", ".join(f"chain {c} sums to {t}" if c else f"checkpoints sum to {t}" for c, t in over.items())
                + f", more than {max_points}"
            )
        elif points and max(totals.values()) != max_points:
            best = max(totals.values())
            what = "the best chain sums" if chains else "checkpoints sum"
            reasons.append(f"{what} to {best}, not {max_points}")
        stated = _TOTAL.search(body)
        if stated and int(stated.group(1)) != max_points:
            reasons.append(f"the Total line says {stated.group(1)}, not {max_points}")
    for key, title in (("zero", "Zero-credit items"), ("deductions", "Deductions")):
        if key in parts and not _ITEM.search(parts[key]):
            reasons.append(f"section '{title}' has no items (write '- None.' if there are none)")
    if "deductions" in parts and not _NONE.search(parts["deductions"]):
        for cap in re.finditer(r"cap(?:ped)?\s+(?:at\s+)?(\d+)\s*/\s*(\d+)", parts["deductions"], re.I):
            if int(cap.group(2)) != max_points or int(cap.group(1)) >= max_points:
                reasons.append(f"deduction cap {cap.group(0)!r} is not below {max_points}/{max_points}")
    return RubricCheck(not reasons, reasons, points)


def clean_generated(text: str) -> str:
    """A generated rubric from its `Checkpoints` heading on (drops preambles and `</thought>` blocks)."""
    text = text.rsplit("</thought>", 1)[-1]
    m = _HEADING.search(text)
    while m and m.group(1).lower() != "checkpoints":
        m = _HEADING.search(text, m.end())
    return (text[m.start() :] if m else text).strip()


async def write_rubric(problem: Problem, llm: LLM, *, tries: int = 3) -> str:
    """Ask `llm` for a marking scheme for `problem`; re-ask with the reasons while `check_rubric` rejects it.

    Raises `RubricError` when no try passes; `LLMError` propagates. Tries are numbered
    steps, so a re-run replays the tries already made from the call cache and a larger
    `tries` only sends the new ones.
    """
    prompt = render(
        template("rubric_writer"),
        problem=problem.statement.strip(),
        solution=problem.solution.strip() or "(No official solution is available; work out a correct solution first.)",
        max_points=problem.max_points,
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    reasons: list[str] = []
    for attempt in range(tries):
        completion = await llm.complete(messages, step=f"rubric/{attempt}")
        rubric = clean_generated(completion.text)
        check = check_rubric(rubric, problem.max_points)
        if check.ok:
            return rubric
        reasons.append(f"try {attempt + 1}: {check.reason}")
        log.info("%s: rubric rejected (%s)", problem.id, check.reason)
        retry = render(template("rubric_retry"), reason=check.reason, max_points=problem.max_points)
        messages = [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": completion.text},
            {"role": "user", "content": retry},
        ]
    raise RubricError(f"{problem.id}: no acceptable rubric in {tries} tries: " + " | ".join(reasons))


RUBRICS_FILE = "problems.jsonl"
"""The run directory's problems with rubrics, written by `write_rubrics`, read by `qednano grade`."""


# ---------------------------------------------------------------------------- normalisers


def rubric_from_items(items: list[dict[str, Any]], max_points: int | None = None) -> str:
    """A MathArena-style list of {title, points (or max_points), desc|description} in the canonical form.

    Unlike the QED-Nano loader, `points` and `max_points` are both read (it summed only
    `max_points`, so a `points` rubric got a maximum of 0).
    """
    lines = []
    total = 0
    for i, item in enumerate(items, start=1):
        value = item.get("points", item.get("max_points", 0))
        value = int(value) if isinstance(value, int | float) and float(value).is_integer() else value
        total += value if isinstance(value, int) else 0
        title = str(item.get("title") or f"Checkpoint {i}").strip().rstrip(".:")
        desc = str(item.get("desc") or item.get("description") or item.get("grading_scheme_desc") or "").strip()
        lines.append(f"{i}. [{value} pts] {title}" + (f": {desc}" if desc else ""))
    top = max_points if max_points is not None else total
    return (
        f"## Checkpoints ({top} pts total)\n" + "\n".join(lines) + f"\nTotal (max {top})\n\n"
        "## Zero-credit items\n- None specified.\n\n## Deductions\n- None specified.\n"
    )


def rubric_from_guidelines(text: str, max_points: int = 7) -> str:
    """IMO-ProofBench grading guidelines (`(Partial)`, `(Almost)`, `(Incorrect)` lists) in the canonical form.

    The IMO-ProofBench scale is 7/6/1/0: a complete proof is the only checkpoint, and the
    guideline items become the conditions for the partial (1) and almost (max-1) levels.
    """
    blocks: dict[str, list[str]] = {}
    current = "notes"
    for line in text.splitlines():
        head = re.match(r"^\s*\((partial|almost|incorrect)\)\s*$", line, re.I)
        if head:
            current = head.group(1).lower()
            continue
        item = re.sub(r"^\s*(?:\d+[.)]|[-*])\s*", "", line).strip()
        if item:
            blocks.setdefault(current, []).append(item)

    def bullets(key: str, prefix: str) -> str:
        return "\n".join(f"- {prefix}{item}" for item in blocks.get(key, []))

    levels = "\n".join(
        part
        for part in (bullets("almost", f"Almost ({max_points - 1} pts): "), bullets("partial", "Partial (1 pt): "))
        if part
    )
    notes = bullets("notes", "")
    return (
        f"## Checkpoints ({max_points} pts total)\n1. [{max_points} pts] A complete and rigorous proof.\n"
        f"Total (max {max_points})\n\n"
        + (f"## Partial-credit levels (award the highest level reached)\n{levels}\n\n" if levels else "")
        + (f"## Notes\n{notes}\n\n" if notes else "")
        + "## Zero-credit items\n"
        + (bullets("incorrect", "") or "- Anything that reaches none of the levels above.")
        + "\n\n## Deductions\n- None specified.\n"
    )


def rubric_items(value: Any) -> list[dict[str, Any]] | None:
    """`value` as a list of rubric items when it is one: a list of dicts, or its JSON or Python-literal text.

    Hub datasets give lists (FineProofs-RL's `schema`: title, points, description); CSV
    copies and `str()` of a list give their text, which is parsed back (as data only:
    `ast.literal_eval` evaluates no code).
    """
    if isinstance(value, str):
        stripped = value.strip()
        if not (stripped.startswith("[") and stripped.endswith("]")):
            return None
        try:
            value = json.loads(stripped)
        except ValueError:
            try:
                value = ast.literal_eval(stripped)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
    if isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
        return list(value)
    return None


def rubric_text(value: Any, max_points: int = 7) -> str:
    """A rubric cell of any source as the text a judge reads: item lists in the canonical form, text as it is.

    Every table-backed source passes its rubric cell through this, so a list never reaches
    the judge as a Python repr; text rubrics (IMO-ProofBench guidelines, written schemes)
    keep their own wording.
    """
    if value is None:
        return ""
    items = rubric_items(value)
    if items is not None:
        return rubric_from_items(items, max_points)
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list | tuple) and not value:
        return ""
    raise ValueError(f"cannot read a rubric from {type(value).__name__}")


def normalise_rubric(value: Any, max_points: int = 7) -> str:
    """Any dataset rubric (list of items, JSON text of one, IMO-ProofBench guidelines, or text) as rubric text."""
    if value is None:
        return ""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            items = rubric_items(stripped)
            if items is None:
                return stripped
            value = items
        elif re.search(r"^\s*\((partial|almost)\)\s*$", stripped, re.I | re.M):
            return rubric_from_guidelines(stripped, max_points)
        else:
            return stripped
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return rubric_from_items(value, max_points)
    raise ValueError(f"cannot read a rubric from {type(value).__name__}")
