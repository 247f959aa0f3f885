"""Row checks for the benchmark loaders: validation with file/line/field errors, and known data repairs.

`sources.py` maps rows to Problems; before it does, each row passes through these
checks. Every problem found is collected (not just the first), so one run of a loader
names every bad row. The one known defect of the official data, the misplaced quote in
`answerbench_v2.csv` row `imo-bench-algebra-036` (eval-anchors section 2.2), is detected
by its shape and repaired, with a warning naming the row.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from qednano.benchmarks.rows import Row
from qednano.config import ConfigError

log = logging.getLogger(__name__)

ANSWER_CATEGORIES = ("Algebra", "Combinatorics", "Geometry", "Number theory")
PROOF_CATEGORIES = ANSWER_CATEGORIES
PROOF_LEVELS = ("pre-IMO", "IMO-easy", "IMO-medium", "IMO-hard")
PROOF_ID = re.compile(r"PB-(Basic|Advanced)-\d{3}")
ANSWER_ID = re.compile(r"imo-bench-(algebra|combinatorics|geometry|number_theory)-\d{3}")
MAX_LISTED = 30


def text(value: Any) -> str:
    """A cell as stripped text; missing cells (None) are empty."""
    return "" if value is None else str(value).strip()


class Issues:
    """Problems found in a table, one line each: `where: field: message`."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.rows: set[str] = set()

    def add(self, row: Row, field: str, message: str) -> None:
        self.lines.append(f"{row.where}: {field}: {message}")
        self.rows.add(row.where)

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        more = len(self.lines) - MAX_LISTED
        tail = [f"... and {more} more"] if more > 0 else []
        raise ConfigError(f"{len(self.rows)} invalid row(s):\n" + "\n".join(self.lines[:MAX_LISTED] + tail))


def check_proofbench(row: Row, values: dict[str, str], issues: Issues) -> bool:
    """An IMO-ProofBench row: id `PB-Basic-NNN`/`PB-Advanced-NNN`, statement, guidelines, known category/level."""
    before = len(issues.lines)
    if not PROOF_ID.fullmatch(values["id"]):
        issues.add(row, "Problem ID", f"expected PB-Basic-NNN or PB-Advanced-NNN, got {values['id']!r}")
    if not values["statement"]:
        issues.add(row, "Problem", "empty statement")
    if not values["rubric"]:
        issues.add(row, "Grading guidelines", "empty grading guidelines")
    if values["category"] and values["category"] not in PROOF_CATEGORIES:
        issues.add(row, "Category", f"expected one of {list(PROOF_CATEGORIES)}, got {values['category']!r}")
    if values["level"] and values["level"] not in PROOF_LEVELS:
        issues.add(row, "Level", f"expected one of {list(PROOF_LEVELS)}, got {values['level']!r}")
    return len(issues.lines) == before


def check_answerbench(row: Row, values: dict[str, str], issues: Issues) -> bool:
    """An IMO-AnswerBench row: id pattern, statement, answer, category among the four and matching the id."""
    before = len(issues.lines)
    match = ANSWER_ID.fullmatch(values["id"])
    if not match:
        issues.add(row, "Problem ID", f"expected imo-bench-<category>-NNN, got {values['id']!r}")
    if not values["statement"]:
        issues.add(row, "Problem", "empty statement")
    if not values["answer"]:
        issues.add(row, "Short Answer", "empty answer")
    if values["category"] not in ANSWER_CATEGORIES:
        issues.add(row, "Category", f"expected one of {list(ANSWER_CATEGORIES)}, got {values['category']!r}")
    elif match and values["category"].lower().replace(" ", "_") != match.group(1):
        issues.add(row, "Category", f"{values['category']!r} does not match the id {values['id']!r}")
    return len(issues.lines) == before


MISPLACED_TAIL = re.compile(r"(?s)(.*)\n,\s*\"?(.+?)\"?")


def repair_misplaced_quote(row: Row, values: dict[str, str]) -> dict[str, str]:
    """Undo the misplaced-quote shift of `answerbench_v2.csv` (`imo-bench-algebra-036`).

    The statement's closing quote is missing, so a CSV parser reads the answer into the
    statement (after a final `newline,`) and every later field shifts left by one: the
    answer column holds the category, the category column the subcategory, and the source
    is missing. Rows of that exact shape are shifted back; all others are returned as is.
    """
    shifted = (
        values["category"] not in ANSWER_CATEGORIES and values["answer"] in ANSWER_CATEGORIES and not values["origin"]
    )
    match = MISPLACED_TAIL.fullmatch(values["statement"]) if shifted else None
    if match is None:
        return values
    log.warning("%s: repaired a misplaced quote (the answer was read into the statement)", row.where)
    return {
        **values,
        "statement": match.group(1).strip(),
        "answer": match.group(2).strip(),
        "category": values["answer"],
        "subcategory": values["category"],
        "origin": values["subcategory"],
    }
