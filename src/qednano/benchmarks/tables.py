"""The shared base of table-backed problem sources, and `Table`: any local table with a column mapping.

`TableSource` says where rows come from (a local `path`, else a `hub` dataset; `rows.py`
reads them) and `Selection` which problems to keep (subsets, categories, ids, limit). The
benchmark loaders (`sources.py`, `proofbench.py`) build on both; `Table` maps
the columns of any CSV, JSONL, JSON or parquet file (or dataset) to Problem fields, nested
ones by dotted path (`model_prediction.proof`). With a proof and a human-points column a
table is a human-graded set for meta-evaluation, like `HumanGradedTable`s
(`gradingbench.py`), and other graders' points columns become their Grades.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from functools import cached_property
from typing import Any, Literal

from pydantic import Field

from qednano.benchmarks.checks import Issues, text
from qednano.benchmarks.rows import Row, read_rows
from qednano.config import ConfigError, Strict, find_file
from qednano.grading.rubrics import rubric_text
from qednano.records import Attempt, Grade, Problem, content_id

ID_COLUMNS = ("Problem ID", "problem_id", "question_id", "id")
STATEMENT_COLUMNS = ("Problem", "problem")


class Selection(Strict):
    """Which problems of a source to keep; every filter that is set must match."""

    ids: list[str] | None = None
    """Keep only these problem ids (in source order)."""
    subsets: list[str] | None = None
    """Keep problems whose `metadata.subset` is one of these (IMO-ProofBench: Basic, Advanced)."""
    categories: list[str] | None = None
    """Keep problems whose `metadata.category` is one of these (Algebra, Combinatorics, ...)."""
    limit: int | None = Field(None, ge=1)
    """Keep at most this many problems (after the other filters)."""

    def select(self, problems: list[Problem], where: str) -> list[Problem]:
        return select(problems, self.ids, self.limit, where, subset=self.subsets, category=self.categories)


class TableSource(Selection):
    """Where a table of rows comes from: a local `path`, else the `hub` dataset id."""

    path: str | None = None
    """A local file (.csv, .jsonl, .json, .parquet) or a local copy of the hub dataset."""
    hub: str | None = None
    """Hub dataset id, read when no `path` is given."""
    split: str = "train"
    splits: list[str] | None = Field(None, min_length=1)
    """Several splits read one after the other (a mirror split by year); replaces `split` when set."""
    revision: str | None = None
    """Hub revision (commit) to pin."""

    def rows(self) -> list[Row]:
        if not self.splits or (self.path and not find_file(self.path).is_dir()):  # a single file has no splits
            return read_rows(self.path, self.hub, self.split, self.revision)
        return [row for split in self.splits for row in read_rows(self.path, self.hub, split, self.revision)]

    @property
    def where(self) -> str:
        return self.path or f"{self.hub}[{'+'.join(self.splits or [self.split])}]"


class TableColumns(Strict):
    """Which column holds each field; only `statement` is required.

    A column is a key of the row, or a dotted path into nested objects
    (`model_prediction.proof`): a key that contains the dots itself wins.
    """

    id: str | None = None
    """Without an id column, ids are content hashes of the statement."""
    statement: str
    solution: str | None = None
    rubric: str | None = None
    answer: str | None = None
    max_points: str | None = None
    proof: str | None = None
    """A graded proof: with `human_points`, each row is also a human-graded Attempt (meta-evaluation)."""
    human_points: str | None = None
    """The human grade of the row's proof, in points (0..max_points)."""
    graders: dict[str, str] = Field(default_factory=dict)
    """Other graders' points by grader name (e.g. `self-rating: model_prediction.self_rating`): imported as
    `grades/<name>.jsonl`, so the report compares them with the human points like any judge."""


MISSING: Any = object()
"""`lookup()`'s answer for a column the row does not have."""


def lookup(values: dict[str, Any], column: str) -> Any:
    """The cell at `column`: a key of the row, else a dotted path through nested objects; MISSING if neither."""
    if column in values:
        return values[column]
    node: Any = values
    for part in column.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def column_names(values: dict[str, Any], prefix: str = "") -> list[str]:
    """Every column of a row, nested ones as dotted paths (what a column mapping may name)."""
    out = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        out.append(name)
        if isinstance(value, dict):
            out += column_names(value, name + ".")
    return out


def points_in(value: Any, max_points: int) -> float | None:
    """A cell as points in 0..max_points (numeric text too); None for anything else."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip()) if isinstance(value, str) else value
    except ValueError:
        return None
    if isinstance(number, int | float) and math.isfinite(number) and 0 <= number <= max_points:
        return float(number)
    return None


def blank(value: Any) -> bool:
    return value is MISSING or value is None or value == ""


class HumanGradedTable(TableSource):
    """A table of human-graded proofs: `load()` gives the selected problems, `attempts()` their graded proofs."""

    @abstractmethod
    def read(self) -> tuple[list[Problem], list[Attempt]]:
        """Every problem and every human-graded proof in the table (validated)."""

    @cached_property
    def table(self) -> tuple[list[Problem], list[Attempt]]:
        """`read()`, once: `load()` and `attempts()` both need it."""
        return self.read()

    def load(self) -> list[Problem]:
        return self.select(self.table[0], self.where)

    def attempts(self) -> list[Attempt]:
        """The human-graded proofs of the selected problems, with `human_points`."""
        problems, attempts = self.table
        keep = {p.id for p in self.select(problems, self.where)}
        return [a for a in attempts if a.problem_id in keep]


class Table(HumanGradedTable):
    """Any local CSV, JSONL, JSON or parquet file (or dataset) with a column mapping.

    With `columns.proof` and `columns.human_points` it is a human-graded set too (rows of one
    problem share it; each row's proof is an Attempt), and `columns.graders` imports other
    graders' points beside the human ones.
    """

    source: Literal["table"] = "table"
    name: str = "table"
    """The `source` written on each Problem."""
    columns: TableColumns
    metadata: list[str] = Field(default_factory=list)
    """Columns copied into `Problem.metadata` (e.g. `subset`, `category`)."""
    max_points: int = Field(7, ge=1)
    """Full marks when there is no `max_points` column."""

    @property
    def graded(self) -> bool:
        return self.columns.proof is not None and self.columns.human_points is not None

    @cached_property
    def parsed(self) -> tuple[list[Problem], list[Attempt], list[Grade]]:
        """Every problem, human-graded attempt and imported grade of the table (validated), read once."""
        issues = Issues()
        problems: list[Problem] = []
        by_id: dict[str, Problem] = {}
        attempts: list[Attempt] = []
        grades: list[Grade] = []
        samples: dict[str, int] = {}
        cols = self.columns
        optional = {c for c in (cols.solution, cols.rubric, cols.answer, cols.max_points, *cols.graders.values()) if c}
        rows = self.rows()
        for row in rows:
            optional -= {c for c in optional if lookup(row.values, c) is not MISSING}
            wanted = [cols.id, cols.statement, cols.proof, cols.human_points, *self.metadata]
            missing = [c for c in wanted if c and lookup(row.values, c) is MISSING]
            if missing:
                issues.add(row, missing[0], f"no such column; the columns are: {', '.join(column_names(row.values))}")
                continue
            problem = self.problem(row, issues)
            if problem is None:
                continue
            if not self.graded:
                problems.append(problem)
                continue
            if by_id.setdefault(problem.id, problem) != problem:
                issues.add(row, cols.statement, f"differs from an earlier row of problem {problem.id!r}")
                continue
            cell = lookup(row.values, str(cols.human_points))
            human = points_in(cell, problem.max_points)
            proof = text(lookup(row.values, str(cols.proof)))
            if human is None:
                issues.add(row, str(cols.human_points), f"expected points in 0..{problem.max_points}, got {cell!r}")
            if not proof:
                issues.add(row, str(cols.proof), "empty proof")
            if human is None or not proof:
                continue
            sample = samples[problem.id] = samples.get(problem.id, -1) + 1
            attempt = Attempt(
                id=Attempt.make_id(problem.id, sample),
                problem_id=problem.id,
                sample=sample,
                scaffold="external",
                proof=proof,
                human_points=human,
                metadata={"row": row.where},
            )
            attempts.append(attempt)
            grades += self.imported(row, attempt, problem.max_points, issues)
        for column in sorted(optional) if rows else []:
            issues.add(
                rows[0],
                column,
                f"no such column in any row; the columns are: {', '.join(column_names(rows[0].values))}",
            )
        issues.raise_if_any()
        return (list(by_id.values()) if self.graded else problems), attempts, grades

    def problem(self, row: Row, issues: Issues) -> Problem | None:
        """The row's Problem, or None (and an issue) when its statement or max points are bad."""
        cols = self.columns

        def cell(column: str | None) -> str:
            value = lookup(row.values, column) if column else None
            return "" if value is MISSING else text(value)

        statement = cell(cols.statement)
        if not statement:
            issues.add(row, cols.statement, "empty statement")
            return None
        points = lookup(row.values, cols.max_points) if cols.max_points else self.max_points
        if not isinstance(points, int) or isinstance(points, bool) or points < 1:
            issues.add(row, cols.max_points or "max_points", f"expected a positive integer, got {points!r}")
            return None
        return Problem(
            id=cell(cols.id) if cols.id else content_id(statement),
            statement=statement,
            solution=cell(cols.solution),
            rubric=rubric_cell(row, cols.rubric, points, issues) if cols.rubric else "",
            answer=cell(cols.answer),
            max_points=points,
            source=self.name,
            metadata={c: lookup(row.values, c) for c in self.metadata},
        )

    def imported(self, row: Row, attempt: Attempt, max_points: int, issues: Issues) -> list[Grade]:
        """The other graders' points on one row's proof (`columns.graders`); a blank cell is ungraded (None)."""
        out = []
        for grader, column in self.columns.graders.items():
            value = lookup(row.values, column)
            given = None if blank(value) else points_in(value, max_points)
            if given is None and not blank(value):
                issues.add(row, column, f"expected points in 0..{max_points}, got {value!r}")
                continue
            out.append(
                Grade(
                    attempt_id=attempt.id,
                    problem_id=attempt.problem_id,
                    judge=grader,
                    points=given,
                    max_points=max_points,
                    explanation=f"imported from column {column!r}" if given is not None else "no points in the table",
                    metadata={"imported": column, "style": "imported"},
                )
            )
        return out

    def read(self) -> tuple[list[Problem], list[Attempt]]:
        problems, attempts, _ = self.parsed
        return problems, attempts

    def attempts(self) -> list[Attempt]:
        if not self.graded:
            raise ConfigError(
                f"{self.where}: `attempts: human` needs columns.proof and columns.human_points in the table source"
            )
        return super().attempts()

    def grades(self) -> list[Grade]:
        """The other graders' points (`columns.graders`) on the selected attempts, one Grade each."""
        keep = {a.id for a in self.attempts()}
        return [g for g in self.parsed[2] if g.attempt_id in keep]


def rubric_cell(row: Row, column: str, max_points: int, issues: Issues) -> str:
    """The row's rubric cell through the normaliser (`rubric_text`); an unreadable cell is an issue on `column`."""
    try:
        value = lookup(row.values, column)
        return rubric_text(None if value is MISSING else value, max_points)
    except ValueError as err:
        issues.add(row, column, str(err))
        return ""


def keep_matching(problems: list[Problem], key: str, allowed: list[str], where: str) -> list[Problem]:
    """Problems whose `metadata[key]` is in `allowed`; a value no problem has is an error (likely a typo)."""
    present = {str(p.metadata.get(key, "")) for p in problems}
    unknown = [a for a in allowed if a not in present]
    if unknown:
        raise ConfigError(f"{where}: no problem has {key} {unknown}; values are {sorted(present)}")
    return [p for p in problems if str(p.metadata.get(key, "")) in allowed]


def select(
    problems: list[Problem],
    ids: list[str] | None,
    limit: int | None,
    where: str,
    *,
    subset: list[str] | None = None,
    category: list[str] | None = None,
) -> list[Problem]:
    """Apply subset/category/id filters and a limit; unknown ids and duplicate ids are errors."""
    seen: set[str] = set()
    for p in problems:
        if p.id in seen:
            raise ConfigError(f"{where}: duplicate problem id {p.id!r}")
        seen.add(p.id)
    if subset is not None:
        problems = keep_matching(problems, "subset", subset, where)
    if category is not None:
        problems = keep_matching(problems, "category", category, where)
    if ids is not None:
        missing = [i for i in ids if i not in seen]
        if missing:
            raise ConfigError(f"{where}: unknown problem ids {missing[:5]}")
        keep = set(ids)
        problems = [p for p in problems if p.id in keep]
    return problems[:limit] if limit is not None else problems
