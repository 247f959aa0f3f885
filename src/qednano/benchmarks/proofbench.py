"""ProofBench (Ma et al. 2026) and MathArena-style proof competitions -> Problems (and rated Attempts).

`ProofBench` reads one row per expert-rated proof (hub `wenjiema02/ProofBench`, a local copy,
or a file); problems are deduplicated by id, and `attempts()` gives the proofs with their
expert rating as `human_points` for grader meta-evaluation (`qednano grade`, attempts: human).
`MathArena` reads a competition (`MathArena/<competition>`: `problem_idx`, `problem`,
`points`, `grading_scheme` as a list of checkpoints or text, `sample_solution`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from qednano.benchmarks.checks import Issues, text
from qednano.benchmarks.rows import Row
from qednano.benchmarks.tables import ID_COLUMNS, STATEMENT_COLUMNS, HumanGradedTable, TableSource, rubric_cell
from qednano.grading.rubrics import rubric_items
from qednano.records import Attempt, Problem


class ProofBench(HumanGradedTable):
    """ProofBench (Ma et al.): one row per expert-rated proof; problems are deduplicated by id."""

    source: Literal["proofbench"] = "proofbench"
    hub: str | None = "wenjiema02/ProofBench"

    def read(self) -> tuple[list[Problem], list[Attempt]]:
        issues = Issues()
        problems: dict[str, Problem] = {}
        attempts: list[Attempt] = []
        for row in self.rows():
            problem_id = text(row.pick(*ID_COLUMNS)[1])
            statement = text(row.pick(*STATEMENT_COLUMNS)[1])
            if not problem_id or not statement:
                issues.add(row, "problem_id" if not problem_id else "problem", "missing value")
                continue
            found = row.values.get("metadata")
            meta: dict[str, Any] = found if isinstance(found, dict) else {}
            year = text(meta.get("contest_year")) or year_from_id(problem_id)
            problem = Problem(
                id=problem_id,
                statement=statement,
                solution=text(row.pick("reference_solution", "solution")[1]),
                rubric=rubric_cell(row, row.pick("marking_scheme", "grading_scheme", "schema")[0] or "", 7, issues),
                max_points=7,
                source=self.source,
                metadata={
                    "subset": "2024-2025" if year in ("2024", "2025") else "other",
                    "contest": text(meta.get("contest")) or problem_id.split("-")[0],
                    "year": year,
                },
            )
            seen = problems.setdefault(problem_id, problem)
            if seen.statement != problem.statement or seen.rubric != problem.rubric:
                issues.add(row, "problem", f"differs from an earlier row of problem {problem_id!r}")
                continue
            attempts.extend(self.rated_proof(row, problem_id, attempts, issues))
        issues.raise_if_any()
        return list(problems.values()), attempts

    def rated_proof(self, row: Row, problem_id: str, earlier: list[Attempt], issues: Issues) -> list[Attempt]:
        column, proof = row.pick("model_solution")
        if column is None:
            return []
        _, rating = row.pick("expert_rating")
        if not isinstance(rating, int | float) or not 0 <= rating <= 7:
            issues.add(row, "expert_rating", f"expected a number in 0..7, got {rating!r}")
            return []
        sample = sum(1 for a in earlier if a.problem_id == problem_id)
        return [
            Attempt(
                id=Attempt.make_id(problem_id, sample),
                problem_id=problem_id,
                sample=sample,
                scaffold="external",
                proof=text(proof),
                human_points=float(rating),
                metadata={
                    "generator": text(row.values.get("generator")),
                    "response_number": row.values.get("response_number"),
                    "split": self.split,
                },
            )
        ]


def year_from_id(problem_id: str) -> str:
    match = re.search(r"(19|20)\d\d", problem_id)
    return match.group(0) if match else ""


class MathArena(TableSource):
    """A MathArena-style proof competition (`MathArena/<competition>` on the hub, or a local copy)."""

    source: Literal["matharena"] = "matharena"
    competition: str | None = None
    """Prefix of the problem ids; defaults to the hub dataset's or file's name (`usamo_2025`)."""

    def load(self) -> list[Problem]:
        name = self.competition or Path(self.path or self.hub or "matharena").stem.split("/")[-1]
        issues = Issues()
        problems = []
        for row in self.rows():
            index = text(row.pick("problem_idx", "id")[1])
            statement = text(row.pick("problem")[1])
            if not index or not statement:
                issues.add(row, "problem_idx" if not index else "problem", "missing value")
                continue
            scheme = row.values.get("grading_scheme")
            points = row.values.get("points")
            if points is not None and positive_int(points) is None:
                issues.add(row, "points", f"expected a positive integer, got {points!r}")
                continue
            max_points = positive_int(points) or positive_int(scheme_points(scheme)) or 7
            problems.append(
                Problem(
                    id=f"{name}-{index}",
                    statement=statement,
                    solution=text(row.pick("sample_solution", "solution")[1]),
                    rubric=scheme_text(scheme),
                    max_points=max_points,
                    source=f"matharena/{name}",
                    metadata={"competition": name, "problem_idx": index},
                )
            )
        issues.raise_if_any()
        return self.select(problems, self.where)


def positive_int(value: Any) -> int | None:
    """`value` as an int when it is a whole number >= 1 (not a bool, NaN or infinity), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if value >= 1 and float(value).is_integer() else None


def scheme_points(scheme: Any) -> float:
    """The sum of the numeric `points` of a list of checkpoints (0 for anything else)."""
    if not isinstance(scheme, list):
        return 0
    values = [item.get("points") for item in scheme if isinstance(item, dict)]
    return sum(v for v in values if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))


def scheme_text(scheme: Any) -> str:
    """A MathArena grading scheme (list of {title, points, desc|description}, its JSON text, or text) as rubric text."""
    scheme = rubric_items(scheme) or scheme
    if isinstance(scheme, list):
        lines = []
        for item in scheme:
            if isinstance(item, dict):
                desc = text(item.get("desc") or item.get("description"))
                lines.append(f"- {text(item.get('title'))} ({item.get('points', 0)} points): {desc}")
        return "\n".join(lines)
    return text(scheme)
