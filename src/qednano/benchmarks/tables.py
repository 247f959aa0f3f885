"""The shared base of table-backed problem sources, and `Table`: any local table with a column mapping.

`TableSource` says where rows come from (a local `path`, else a `hub` dataset; `rows.py`
reads them) and `Selection` which problems to keep (subsets, categories, ids, limit). The
benchmark loaders (`sources.py`, `proofbench.py`) build on both; `Table` maps
the columns of any CSV, JSONL, JSON or parquet file (or dataset) to Problem fields.
"""

from __future__ import annotations

from abc import abstractmethod
from functools import cached_property
from typing import Literal

from pydantic import Field

from qednano.benchmarks.checks import Issues, text
from qednano.benchmarks.rows import Row, read_rows
from qednano.config import ConfigError, Strict, find_file
from qednano.grading.rubrics import rubric_text
from qednano.records import Attempt, Problem, content_id

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
    """Which column holds each Problem field; only `statement` is required."""

    id: str | None = None
    """Without an id column, ids are content hashes of the statement."""
    statement: str
    solution: str | None = None
    rubric: str | None = None
    answer: str | None = None
    max_points: str | None = None


class Table(TableSource):
    """Any local CSV, JSONL, JSON or parquet file (or dataset) with a column mapping."""

    source: Literal["table"] = "table"
    name: str = "table"
    """The `source` written on each Problem."""
    columns: TableColumns
    metadata: list[str] = Field(default_factory=list)
    """Columns copied into `Problem.metadata` (e.g. `subset`, `category`)."""
    max_points: int = Field(7, ge=1)
    """Full marks when there is no `max_points` column."""

    def load(self) -> list[Problem]:
        issues = Issues()
        problems = []
        cols = self.columns
        for row in self.rows():
            missing = [c for c in (cols.id, cols.statement, *self.metadata) if c and c not in row.values]
            if missing:
                issues.add(row, missing[0], f"no such column (columns: {sorted(map(str, row.values))[:12]})")
                continue
            statement = text(row.values[cols.statement])
            if not statement:
                issues.add(row, cols.statement, "empty statement")
                continue
            points = row.values.get(cols.max_points) if cols.max_points else self.max_points
            if not isinstance(points, int) or points < 1:
                issues.add(row, cols.max_points or "max_points", f"expected a positive integer, got {points!r}")
                continue
            problems.append(
                Problem(
                    id=text(row.values[cols.id]) if cols.id else content_id(statement),
                    statement=statement,
                    solution=text(row.values.get(cols.solution)) if cols.solution else "",
                    rubric=rubric_cell(row, cols.rubric, points, issues) if cols.rubric else "",
                    answer=text(row.values.get(cols.answer)) if cols.answer else "",
                    max_points=points,
                    source=self.name,
                    metadata={c: row.values[c] for c in self.metadata},
                )
            )
        issues.raise_if_any()
        return self.select(problems, self.where)


def rubric_cell(row: Row, column: str, max_points: int, issues: Issues) -> str:
    """The row's rubric cell through the normaliser (`rubric_text`); an unreadable cell is an issue on `column`."""
    try:
        return rubric_text(row.values.get(column), max_points)
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
