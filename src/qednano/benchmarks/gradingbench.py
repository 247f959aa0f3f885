"""Human-graded proof sets for grader meta-evaluation -> Problems and Attempts with `human_points`.

Like ProofBench's expert ratings (`proofbench.py`), these sources give problems
(`load()`) and the human-graded proofs (`attempts()`), which `qednano grade` with
`attempts: human` imports into the run and grades (`grading/inputs.py`); `grading/agreement.py` then
compares the judge's points with the human ones. Every row is validated and a bad row is an
error naming the file, the line and the field.

- `imo-gradingbench`: IMO-GradingBench (Luong et al. 2025; eval-anchors section 2.3),
  1000 human gradings in the official `imobench/gradingbench.csv` of google-deepmind/superhuman
  (columns `Grading ID, Problem ID, Problem, Solution, Grading guidelines, Response, Points,
  Reward, Problem Source`). There is no official hub dataset: give the CSV as `path` (or a hub
  mirror in the same columns as `hub`). The human label `Reward` (incorrect / partial /
  almost / correct) is read as 0 / 1 / 6 / 7 points, the IMO-ProofBench levels its judges
  answer in; `human: points` reads the `Points` column instead.
- `matharena-gradingbench`: MathArena's human-graded model outputs as packaged by QED-Nano
  (`lm-provers/matharena-gradingbench`; anchor-qed-nano section 3.3): `problem`, `answer`
  (the proof), `details` (the rubric), `points` (the human grade). `details` items written
  by MathArena's graders carry the scheme (`max_points`, `grading_scheme_desc`) beside the
  grader's own `points` and comment (`desc`); only the scheme reaches the rubric, so a judge
  never sees the human grade it is compared with.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from qednano.benchmarks.checks import Issues, text
from qednano.benchmarks.proofbench import positive_int, scheme_points, scheme_text
from qednano.benchmarks.rows import Row
from qednano.benchmarks.tables import ID_COLUMNS, STATEMENT_COLUMNS, HumanGradedTable, rubric_cell
from qednano.records import Attempt, Problem, content_id

REWARD_POINTS: dict[str, int] = {"incorrect": 0, "partial": 1, "almost": 6, "correct": 7}
"""IMO-GradingBench's labels as points on the IMO-ProofBench scale (7 correct, 6 almost, 1 partial, 0 incorrect)."""


@dataclass
class Collected:
    """Problems (deduplicated by id) and human-graded attempts read from a table so far."""

    problems: dict[str, Problem] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    samples: Counter[str] = field(default_factory=Counter)

    def problem(self, row: Row, problem: Problem, issues: Issues, column: str) -> bool:
        """Keep `problem`; False (and an issue on `column`) when an earlier row gave the same id other content."""
        seen = self.problems.setdefault(problem.id, problem)
        same = (seen.statement, seen.solution, seen.rubric, seen.max_points) == (
            problem.statement,
            problem.solution,
            problem.rubric,
            problem.max_points,
        )
        if not same:
            issues.add(row, column, f"differs from an earlier row of problem {problem.id!r}")
        return same

    def attempt(self, problem_id: str, proof: str, human_points: float, metadata: dict[str, Any]) -> None:
        """A human-graded attempt, numbered in row order within its problem."""
        sample = self.samples[problem_id]
        self.samples[problem_id] += 1
        self.attempts.append(
            Attempt(
                id=Attempt.make_id(problem_id, sample),
                problem_id=problem_id,
                sample=sample,
                scaffold="external",
                proof=proof,
                human_points=human_points,
                metadata=metadata,
            )
        )


def number(value: Any) -> float | None:
    """A cell as a finite number (numeric text included); None for anything else, booleans too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


class IMOGradingBench(HumanGradedTable):
    """IMO-GradingBench: human gradings of proofs, one row each (`gradingbench.csv`)."""

    source: Literal["imo-gradingbench"] = "imo-gradingbench"
    hub: str | None = None
    """No official hub dataset; the official file is `imobench/gradingbench.csv` (give it as `path`)."""
    human: Literal["reward", "points"] = "reward"
    """The human grade: the `Reward` label (mapped by `REWARD_POINTS`) or the `Points` column (0..7)."""

    def read(self) -> tuple[list[Problem], list[Attempt]]:
        issues = Issues()
        out = Collected()
        for row in self.rows():
            before = len(issues.lines)
            problem_id = text(row.pick(*ID_COLUMNS)[1])
            statement = text(row.pick(*STATEMENT_COLUMNS, "problem_statement")[1])
            response = text(row.pick("Response", "response", "proof")[1])
            reward = text(row.pick("Reward", "reward")[1]).lower()
            points_cell = row.pick("Points", "points")[1]
            points = number(points_cell)
            if not problem_id:
                issues.add(row, "Problem ID", "missing value")
            if not statement:
                issues.add(row, "Problem", "empty statement")
            if not response:
                issues.add(row, "Response", "empty response")
            if reward not in REWARD_POINTS and (self.human == "reward" or reward):
                issues.add(row, "Reward", f"expected one of {list(REWARD_POINTS)}, got {reward!r}")
            if (points_cell not in (None, "") or self.human == "points") and (points is None or not 0 <= points <= 7):
                issues.add(row, "Points", f"expected a number in 0..7, got {points_cell!r}")
            if len(issues.lines) > before:
                continue
            problem = Problem(
                id=problem_id,
                statement=statement,
                solution=text(row.pick("Solution", "solution", "reference_solution")[1]),
                rubric=rubric_cell(
                    row, row.pick("Grading guidelines", "grading_guidelines", "rubric")[0] or "", 7, issues
                ),
                max_points=7,
                source=self.source,
                metadata={"origin": text(row.pick("Problem Source", "problem_source", "source")[1])},
            )
            if not out.problem(row, problem, issues, "Problem"):
                continue
            human = float(REWARD_POINTS[reward]) if self.human == "reward" else float(points or 0)
            meta = {"grading_id": text(row.pick("Grading ID", "grading_id")[1]), "reward": reward, "points": points}
            out.attempt(problem_id, response, human, meta)
        issues.raise_if_any()
        return list(out.problems.values()), out.attempts


class MathArenaGradingBench(HumanGradedTable):
    """MathArena model outputs with human grades (`lm-provers/matharena-gradingbench`)."""

    source: Literal["matharena-gradingbench"] = "matharena-gradingbench"
    hub: str | None = "lm-provers/matharena-gradingbench"

    def read(self) -> tuple[list[Problem], list[Attempt]]:
        issues = Issues()
        out = Collected()
        for row in self.rows():
            statement = text(row.pick("problem", "Problem")[1])
            if not statement:
                issues.add(row, "problem", "empty statement")
                continue
            proof = text(row.pick("answer", "proof", "model_solution")[1])
            if not proof:
                issues.add(row, "answer", "empty proof")
                continue
            scheme = scheme_items(row.values.get("details"))
            max_points = positive_int(scheme_points(scheme)) or 7
            cell = row.values.get("points")
            points = number(cell)
            if points is None or not 0 <= points <= max_points:
                issues.add(row, "points", f"expected a number in 0..{max_points}, got {cell!r}")
                continue
            problem_id = matharena_id(row, statement)
            problem = Problem(
                id=problem_id,
                statement=statement,
                solution=text(row.pick("solution", "sample_solution")[1]),
                rubric=scheme_text(scheme),
                max_points=max_points,
                source=self.source,
                metadata={"competition": text(row.values.get("competition"))},
            )
            if not out.problem(row, problem, issues, "details"):
                continue
            out.attempt(problem_id, proof, points, {"model_name": text(row.values.get("model_name"))})
        issues.raise_if_any()
        return list(out.problems.values()), out.attempts


def matharena_id(row: Row, statement: str) -> str:
    """`<competition>-<problem_idx>` (or the id column alone); a content hash of the statement without one."""
    found = text(row.pick("problem_id", "problem_idx", "id")[1])
    competition = text(row.values.get("competition"))
    if found:
        return f"{competition}-{found}" if competition and not found.startswith(competition) else found
    return content_id(statement)


def scheme_items(details: Any) -> Any:
    """A MathArena `details` cell as grading-scheme items ({title, points, desc}), or its text.

    Items of a grader's judgment (with `max_points` or `grading_scheme_desc`) become their
    scheme: full marks and description; the grader's awarded points and comment are dropped.
    A JSON list stored as text (CSV copies) is parsed first.
    """
    if isinstance(details, str) and details.lstrip().startswith("["):
        try:
            details = json.loads(details)
        except ValueError:
            return details
    if not isinstance(details, list):
        return details
    items = []
    for item in details:
        if not isinstance(item, dict):
            continue
        if "max_points" in item or "grading_scheme_desc" in item:
            item = {
                "title": item.get("title"),
                "points": item.get("max_points", 0),
                "desc": item.get("grading_scheme_desc"),
            }
        items.append(item)
    return items
