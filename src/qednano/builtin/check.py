"""The exact checker of built-in proofs: every step checked, points by the problem's own rubric.

The GRADE stage of the BUILTIN flow, under `judge.py`. `check()` reads the instance from the
statement and the checkpoints and deductions from the rubric text (as `domain.rubric`
writes them), walks the proof line by line, and returns the points with one verdict per
line. Each line is one of:

- `ok`: `FACT by RULE from PREMISES` with the rule's own body, every premise established;
- `invalid step`: not a step, or its fact follows from the established facts by no rule
  (the fact stays unestablished);
- `unjustified conclusion`: the fact follows, but no rule is cited;
- `wrong citation`: the fact follows, but not by the cited rule and premises;
- `distractor step`: a repeated fact, or one that no derivation of the goal uses (this
  deduction adds to any citation fault of the same line).

Lines after `qed` are ignored; when the attempt was cut off, its last (partial) line is too.
Checkpoints are earned by the facts established; the score is the checkpoints minus the
deductions, at least 0, and 0 when invalid and distractor lines outnumber the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from qednano.builtin.domain import STEP, Instance, parse_statement

CHECKPOINT = re.compile(r"^\s*\d+\.\s*\[(\d+) pts?\] Derives (?:the goal )?(p\d+)\b", re.M)
DEDUCTION = re.compile(r"^\s*-\s*-(\d+):.*\(([a-z ]+)\)\.?\s*$", re.M)


@dataclass
class Line:
    """One proof line and what the checker found."""

    number: int
    text: str
    verdict: str
    """`ok` or a fault name; a distractor with a citation fault is `wrong citation+distractor step`."""
    note: str = ""


@dataclass
class Checked:
    """The outcome of `check`: points (None when the problem is not a built-in one) and why."""

    points: float | None
    max_points: int
    flags: list[str] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    earned: dict[str, int] = field(default_factory=dict)
    """Checkpoint fact -> points earned."""
    deducted: dict[str, int] = field(default_factory=dict)
    """Fault -> points taken off."""
    reason: str = ""
    concluded: bool = False
    """The proof reached its `qed` line."""

    def explanation(self) -> str:
        if self.points is None:
            return self.reason
        out = [f"line {ln.number}: {ln.verdict}" + (f" ({ln.note})" if ln.note else "") for ln in self.lines]
        out.append("checkpoints: " + ", ".join(f"{k} {v}" for k, v in self.earned.items()))
        out.append("deductions: " + (", ".join(f"{k} -{v}" for k, v in self.deducted.items() if v) or "none"))
        if self.reason:
            out.append(self.reason)
        out.append(f"score: {self.points:g}/{self.max_points}")
        return "\n".join(out)

    def metadata(self) -> dict[str, Any]:
        verdicts: dict[str, int] = {}
        for ln in self.lines:
            for v in ln.verdict.split("+"):
                verdicts[v] = verdicts.get(v, 0) + 1
        return {"checkpoints": self.earned, "deductions": self.deducted, "lines": verdicts}


def read_rubric(text: str) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """The checkpoints (fact, points) and the deductions (fault -> points) a built-in rubric states."""
    checkpoints = [(m.group(2), int(m.group(1))) for m in CHECKPOINT.finditer(text)]
    deductions = {m.group(2): int(m.group(1)) for m in DEDUCTION.finditer(text)}
    return checkpoints, deductions


def check(statement: str, rubric: str, proof: str, *, max_points: int = 7, truncated: bool = False) -> Checked:
    """Check `proof` against the instance in `statement` and score it by `rubric` (see the module docstring)."""
    instance = parse_statement(statement)
    checkpoints, deductions = read_rubric(rubric)
    if instance is None or not checkpoints:
        what = "statement" if instance is None else "rubric"
        return Checked(None, max_points, ["not_builtin"], reason=f"the problem's {what} is not in the built-in form")
    return walk(instance, checkpoints, deductions, proof, max_points, truncated)


def walk(
    instance: Instance,
    checkpoints: list[tuple[str, int]],
    deductions: dict[str, int],
    proof: str,
    max_points: int,
    truncated: bool,
) -> Checked:
    out = Checked(0.0, max_points)
    useful = instance.useful()
    statement_lines = set(instance.statement().splitlines())
    established = set(instance.given)
    raw = proof.splitlines()
    if truncated and raw:
        raw = raw[:-1]  # the line being written when the output was cut off
    concluded = False
    faults: dict[str, int] = {}
    for number, text in enumerate(raw, start=1):
        line = " ".join(text.split())
        if not line:
            continue
        if line == "qed":
            concluded = True
            break
        verdicts, note = judge_line(instance, line, established, useful)
        if line in statement_lines:
            out.flags.append("echo")
        for v in verdicts:
            faults[v] = faults.get(v, 0) + 1
        out.lines.append(Line(number, line, "+".join(verdicts) or "ok", note))
    flags = {
        "invalid step": "invalid_step",
        "unjustified conclusion": "unjustified_conclusion",
        "wrong citation": "wrong_citation",
        "distractor step": "distractor_step",
    }
    out.flags += [flags[f] for f in faults]
    out.concluded = concluded
    reached = instance.goal in established
    if concluded and not reached:
        out.flags.append("unjustified_conclusion")
    if truncated or not (reached or concluded):
        out.flags.append("truncated")
    out.flags = list(dict.fromkeys(out.flags))
    out.earned = {fact: (pts if fact in established else 0) for fact, pts in checkpoints}
    out.deducted = {f: n * deductions.get(f, 0) for f, n in faults.items()}
    invalid = faults.get("invalid step", 0)
    idle = sum(1 for ln in out.lines if "invalid step" in ln.verdict or "distractor step" in ln.verdict)
    others = len(out.lines) - idle
    if invalid == len(out.lines):
        out.points, out.reason = 0.0, "zero credit: no step establishes a fact"
    elif idle > others:
        out.points, out.reason = 0.0, f"zero credit: {idle} invalid or irrelevant lines outnumber the {others} others"
    else:
        total = sum(out.earned.values()) - sum(out.deducted.values())
        out.points = float(min(max_points, max(0, total)))
    return out


def judge_line(instance: Instance, line: str, established: set[str], useful: set[str]) -> tuple[list[str], str]:
    """The faults of one line (empty: a valid step); establishes the line's fact when it follows."""
    m = STEP.match(line)
    if m is None:
        return ["invalid step"], "not a step"
    fact, cited = m.group(1), m.group(2)
    premises = tuple((m.group(3) or "").split())
    if fact in established:
        return ["distractor step"], f"{fact} is already established"
    justifying = [r for r in instance.rules if r.head == fact and set(r.body) <= established]
    if not justifying:
        return ["invalid step"], f"{fact} does not follow from the established facts"
    established.add(fact)
    faults = []
    note = ""
    rule = instance.rule(cited)
    if cited is None:
        faults.append("unjustified conclusion")
        note = "no rule cited"
    elif rule is None or rule not in justifying or set(premises) != set(rule.body) or len(premises) != len(rule.body):
        faults.append("wrong citation")
        note = f"{cited} from {' '.join(premises) or '(nothing)'} does not justify {fact}"
    if fact not in useful:
        faults.append("distractor step")
        note = (note + "; " if note else "") + f"no derivation of the goal uses {fact}"
    return faults, note
