"""Problem sources -> Problems: the benchmarks of the EVAL flow and any local problem file.

A recipe's `problems:` block is a `ProblemSource`, picked by its `source` key (default
`file`). Each benchmark reads rows from the hub, from a local copy of the hub dataset, or
from a file in the official layout (`rows.py`) and maps them to `Problem`s; the three give
the same Problems because columns are found by every name the official files and the
mirrors use. Every row is validated and a bad row is an error naming the file, the line
and the field. Subsets (`subsets`, `categories`, `ids`, `limit`) select from the recipe.

- `imo-proofbench`: IMO-ProofBench (Luong et al. 2025), 60 proofs, Basic/Advanced.
- `imo-answerbench`: IMO-AnswerBench, 400 final-answer problems; repairs the known
  misplaced-quote row of `answerbench_v2.csv` (`checks.py`).
- `proofbench`: ProofBench (Ma et al. 2026), problems with marking schemes, and the
  expert-rated proofs as Attempts with `human_points` for grader meta-evaluation
  (`proofbench.py`).
- `matharena`: MathArena-style proof competitions (`proofbench.py`).
- `imo-gradingbench`, `matharena-gradingbench`: human-graded proofs for grader
  meta-evaluation, IMO-GradingBench and MathArena's human grades (`gradingbench.py`).
- `table`: any CSV, JSONL, JSON or parquet file (or dataset) with a column mapping
  (`tables.py`, which also holds the selection shared by all table sources).
- `file`: JSONL of `Problem` records, the native form.
- `builtin`: generated problems of the built-in proof domain (`builtin/source.py`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag

from qednano.benchmarks.checks import (
    ANSWER_CATEGORIES,
    Issues,
    check_answerbench,
    check_proofbench,
    repair_misplaced_quote,
    text,
)
from qednano.benchmarks.gradingbench import IMOGradingBench, MathArenaGradingBench
from qednano.benchmarks.proofbench import MathArena, ProofBench
from qednano.benchmarks.tables import (
    ID_COLUMNS,
    STATEMENT_COLUMNS,
    Selection,
    Table,
    TableSource,
    keep_matching,
    rubric_cell,
    select,
)
from qednano.builtin.source import BuiltinSource
from qednano.config import ConfigError, find_file
from qednano.records import Problem
from qednano.store import read_jsonl

__all__ = [
    "BuiltinSource",
    "IMOAnswerBench",
    "IMOGradingBench",
    "IMOProofBench",
    "MathArena",
    "MathArenaGradingBench",
    "ProblemFile",
    "ProblemSource",
    "ProofBench",
    "Selection",
    "Table",
    "select",
]


class ProblemFile(Selection):
    """Problems stored as JSONL `Problem` records."""

    source: Literal["file"] = "file"
    path: str
    """JSONL file, from the working directory (else the package's recipes folder)."""

    def load(self) -> list[Problem]:
        path = find_file(self.path)
        if not path.is_file():
            raise ConfigError(f"{path}: problem file not found")
        problems = read_jsonl(path, Problem, tolerate_torn_tail=False)
        return self.select(problems, str(path))


class IMOProofBench(TableSource):
    """IMO-ProofBench: the official CSV (`proofbench_v2.csv`) or a hub mirror."""

    source: Literal["imo-proofbench"] = "imo-proofbench"
    hub: str | None = "lm-provers/IMOProofBench"
    levels: list[str] | None = None
    """Keep problems of these levels (pre-IMO, IMO-easy, IMO-medium, IMO-hard)."""

    def load(self) -> list[Problem]:
        issues = Issues()
        problems = []
        for row in self.rows():
            values = {
                "id": text(row.pick(*ID_COLUMNS)[1]),
                "statement": text(row.pick(*STATEMENT_COLUMNS)[1]),
                "solution": text(row.pick("Solution", "solution")[1]),
                "rubric": rubric_cell(row, row.pick("Grading guidelines", "grading_guidelines")[0] or "", 7, issues),
                "category": text(row.pick("Category", "category")[1]),
                "level": text(row.pick("Level", "level")[1]),
                "short_answer": text(row.pick("Short Answer", "short_answer")[1]),
                "origin": text(row.pick("Source", "source")[1]),
            }
            if check_proofbench(row, values, issues):
                problems.append(
                    Problem(
                        id=values["id"],
                        statement=values["statement"],
                        solution=values["solution"],
                        rubric=values["rubric"],
                        max_points=7,
                        source=self.source,
                        metadata={
                            "subset": values["id"].split("-")[1],
                            "category": values["category"],
                            "level": values["level"],
                            "short_answer": values["short_answer"],
                            "origin": values["origin"],
                        },
                    )
                )
        issues.raise_if_any()
        if self.levels is not None:
            problems = keep_matching(problems, "level", self.levels, self.where)
        return self.select(problems, self.where)


class IMOAnswerBench(TableSource):
    """IMO-AnswerBench: the official CSV (`answerbench_v2.csv`) or a hub mirror; 0/1 per answer."""

    source: Literal["imo-answerbench"] = "imo-answerbench"
    hub: str | None = "lm-provers/IMOBench-FinalAnswer"
    repair: bool = True
    """Repair the known misplaced-quote row (`imo-bench-algebra-036` in v2); off = report it as an error."""

    def load(self) -> list[Problem]:
        issues = Issues()
        problems = []
        for row in self.rows():
            values = {
                "id": text(row.pick(*ID_COLUMNS)[1]),
                "statement": text(row.pick(*STATEMENT_COLUMNS)[1]),
                "answer": text(row.pick("Short Answer", "short_answer", "answer")[1]),
                "category": text(row.pick("Category", "category")[1]),
                "subcategory": text(row.pick("Subcategory", "subcategory")[1]),
                "origin": text(row.pick("Source", "source")[1]),
            }
            if self.repair:
                values = repair_misplaced_quote(row, values)
            if not values["category"] and values["id"]:
                values["category"] = category_from_id(values["id"])
            if check_answerbench(row, values, issues):
                problems.append(
                    Problem(
                        id=values["id"],
                        statement=values["statement"],
                        answer=values["answer"],
                        max_points=1,
                        source=self.source,
                        metadata={
                            "subset": values["category"],
                            "category": values["category"],
                            "subcategory": values["subcategory"],
                            "origin": values["origin"],
                        },
                    )
                )
        issues.raise_if_any()
        return self.select(problems, self.where)


def category_from_id(problem_id: str) -> str:
    """`imo-bench-number_theory-007` -> `Number theory` (for mirrors without a category column)."""
    match = re.fullmatch(r"imo-bench-([a-z_]+)-\d+", problem_id)
    name = match.group(1).replace("_", " ").capitalize() if match else ""
    return name if name in ANSWER_CATEGORIES else ""


def source_tag(value: Any) -> str:
    """The `source` key of a problems block; `file` when absent (the native JSONL form)."""
    if isinstance(value, dict):
        return str(value.get("source", "file"))
    return str(getattr(value, "source", "file"))


ProblemSource = Annotated[
    Annotated[ProblemFile, Tag("file")]
    | Annotated[IMOProofBench, Tag("imo-proofbench")]
    | Annotated[IMOAnswerBench, Tag("imo-answerbench")]
    | Annotated[ProofBench, Tag("proofbench")]
    | Annotated[MathArena, Tag("matharena")]
    | Annotated[IMOGradingBench, Tag("imo-gradingbench")]
    | Annotated[MathArenaGradingBench, Tag("matharena-gradingbench")]
    | Annotated[Table, Tag("table")]
    | Annotated[BuiltinSource, Tag("builtin")],
    Discriminator(source_tag),
]
"""A recipe's `problems:` block, picked by `source` (default `file`)."""
