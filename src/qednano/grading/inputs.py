"""`qednano grade`'s inputs and outputs: which problems and attempts a run grades, and its agreement table.

The GRADE stage of the EVAL and DATA flows, and the grader meta-evaluation, read their
inputs here so that `grade` and the later `eval` command agree:

- problems come from the recipe's `problems:` source, with the rubrics that `qednano
  rubrics` wrote to the run's `problems.jsonl` taking the place of the source's;
- attempts are the run's `attempts.jsonl` (`attempts: generated`, the default), or, for
  meta-evaluation (`attempts: human`), the human-graded attempts the source provides
  (ProofBench expert ratings, IMO-GradingBench, MathArena human grades, a `graded` file),
  imported once into `attempts.jsonl` so that the report and the viewer see them like any
  other attempts; a table's other graders' points (`columns.graders`) are imported once
  into `grades/<grader>.jsonl`, beside the judges' grades;
- an attempt id written twice (two writers once shared the run) counts once, with a warning;
- after grading, attempts with human points give `agreement.md` (`agreement.py`).
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from pydantic import BaseModel

from qednano.config import ConfigError
from qednano.grading.agreement import agreement, agreement_table
from qednano.grading.rubrics import RUBRICS_FILE
from qednano.records import Attempt, Grade, Problem
from qednano.store import RunDir, atomic_write

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)

ATTEMPTS_FILE = "attempts.jsonl"
AGREEMENT_FILE = "agreement.md"


def with_run_rubrics(problems: list[Problem], store: RunDir) -> list[Problem]:
    """`problems`, each replaced by its record in the run's `problems.jsonl` (rubric added) when there is one."""
    written = {p.id: p for p in store.read(RUBRICS_FILE, Problem)}
    return [written.get(p.id, p) for p in problems]


def check_human_attempts(source: Any) -> None:
    """Read (and so validate) the source's human-graded attempts; a source without any is an error."""
    if not callable(getattr(source, "attempts", None)):
        raise ConfigError(
            f"problems source {getattr(source, 'source', '?')!r} has no human-graded attempts "
            "(attempts: human needs source: graded, table (with columns.proof and columns.human_points), "
            "proofbench, imo-gradingbench or matharena-gradingbench)"
        )
    source.attempts()


def import_human_attempts(source: Any, store: RunDir) -> list[Attempt]:
    """Append the source's human-graded attempts to `attempts.jsonl` (once); returns every attempt of the run."""
    check_human_attempts(source)
    existing = {a.id: a for a in store.read(ATTEMPTS_FILE, Attempt)}
    new = 0
    for attempt in source.attempts():
        old = existing.get(attempt.id)
        if old is None:
            store.append(ATTEMPTS_FILE, attempt)
            existing[attempt.id] = attempt
            new += 1
        elif old.proof != attempt.proof or old.human_points != attempt.human_points:
            raise ConfigError(
                f"{store.file(ATTEMPTS_FILE)}: attempt {attempt.id!r} differs from the human-graded one; "
                "use a new run_dir for meta-evaluation"
            )
    log.info("imported %d human-graded attempts", new)
    import_grader_points(source, store)
    return list(existing.values())


def imported_graders(source: Any) -> list[str]:
    """The names of the other graders whose points a source carries (a table's `columns.graders`)."""
    columns = getattr(source, "columns", None)
    return list(getattr(columns, "graders", {}) or {})


def import_grader_points(source: Any, store: RunDir) -> None:
    """Write the source's other graders' points (`grades()`) to `grades/<grader>.jsonl`, each grade once."""
    if not callable(getattr(source, "grades", None)):
        return
    done: dict[str, set[str]] = {}
    for grade in source.grades():
        name = f"grades/{grade.judge}.jsonl"
        if grade.judge not in done:
            done[grade.judge] = {g.attempt_id for g in store.read(name, Grade)}
        if grade.attempt_id not in done[grade.judge]:
            store.append(name, grade)
            done[grade.judge].add(grade.attempt_id)


def grade_inputs(
    problems: list[Problem], attempts: str, source: Any, store: RunDir
) -> tuple[list[Problem], list[Attempt]]:
    """The problems (with the run's rubrics) and the attempts to grade, for `attempts` = generated or human."""
    graded = import_human_attempts(source, store) if attempts == "human" else store.read(ATTEMPTS_FILE, Attempt)
    graded = unique(graded, str(store.file(ATTEMPTS_FILE)))
    if not graded:
        raise ConfigError(f"{store.file(ATTEMPTS_FILE)}: no attempts to grade (run `qednano generate` first)")
    return with_run_rubrics(problems, store), graded


def unique(records: list[T], where: str) -> list[T]:
    """`records` without the later ones of a repeated id (two writers once shared a run), with a warning."""
    seen: dict[str, T] = {}
    for r in records:
        seen.setdefault(str(getattr(r, "id", None) or getattr(r, "attempt_id", "")), r)
    if len(seen) < len(records):
        log.warning("%s: ignoring %d duplicate record(s) of an id already read", where, len(records) - len(seen))
    return list(seen.values())


def write_agreement(attempts: list[Attempt], judges: list[str], store: RunDir) -> str | None:
    """Write `agreement.md` for the attempts with human points; None (nothing written) when there are none."""
    if not any(a.human_points is not None for a in attempts):
        return None
    grades: list[Grade] = []
    for name in judges:
        grades.extend(store.read(f"grades/{name}.jsonl", Grade))
    table = agreement_table(agreement(attempts, grades))
    atomic_write(store.file(AGREEMENT_FILE), "# Grader agreement with human grades\n\n" + table)
    return table
