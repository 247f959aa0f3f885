"""Running stages as library calls: `run_jobs` (generate, rubrics, grade) and `run_eval` (all cells, then the report).

The CLI and a notebook call the same functions; the caller only decides how progress is
shown, through a `Track`: given a label, it returns the `progress(done, total)` callback of
that label's bar (or nothing to show).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from qednano.eval.cells import (
    Cell,
    EvalRecipe,
    OpenCell,
    load_benchmark_problems,
    open_cell,
    pin_eval,
    plan,
    record_calls,
)
from qednano.eval.pipeline import Outcome, Progress
from qednano.grading.inputs import ATTEMPTS_FILE
from qednano.llm.client import LLM
from qednano.records import Problem
from qednano.report.build import load_cells, write_report
from qednano.store import RunDir

log = logging.getLogger(__name__)

Track = Callable[[str], Progress]
"""`track(label)` -> the progress callback for one stage of work (e.g. one bar of a progress display)."""

Job = Callable[[Progress], Awaitable[Outcome]]
"""A stage's work, given a progress callback: e.g. `lambda progress: generate(..., progress=progress)`."""


def no_progress(label: str) -> Progress:
    return lambda done, total: None


def merged(outcomes: dict[str, Outcome]) -> Outcome:
    """One outcome over several labelled jobs (failed items keep their label)."""
    if len(outcomes) == 1:
        return next(iter(outcomes.values()))
    total = Outcome()
    for label, one in outcomes.items():
        total.total += one.total
        total.skipped += one.skipped
        total.done += one.done
        total.failed.update({f"{label}: {k}": v for k, v in one.failed.items()})
    return total


def run_jobs(
    stage: str, store: RunDir, llms: dict[str, LLM], jobs: dict[str, Job], track: Track = no_progress
) -> Outcome:
    """Run `jobs` at once in one event loop; then log call counts to the run and close the models."""

    async def main() -> list[Outcome]:
        failing = True
        try:
            done = await asyncio.gather(*(job(track(label)) for label, job in jobs.items()))
            failing = False
            return done
        finally:
            try:
                record_calls(store, stage, llms.values(), failing)
            finally:
                for llm in {id(m): m for m in llms.values()}.values():
                    await llm.aclose()

    return merged(dict(zip(jobs, asyncio.run(main()), strict=True)))


@dataclass
class CellOutcome:
    """What one eval cell did: its generation and its grading."""

    cell: OpenCell
    generated: Outcome
    graded: Outcome


@dataclass
class EvalOutcome:
    """What `run_eval` did: every cell's outcomes and the report files written."""

    cells: list[CellOutcome]
    reports: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(c.generated.failed or c.graded.failed for c in self.cells)


def run_eval(recipe: EvalRecipe, track: Track = no_progress) -> EvalOutcome:
    """Generate, grade and report every (benchmark, model, scaffold) cell of an eval recipe.

    All cells run at once in one event loop, on shared model endpoints, so no server idles
    while one cell finishes its slowest problem. The report covers every cell on record.
    """
    cells = plan(recipe)
    problems = load_benchmark_problems(recipe)
    root = pin_eval(recipe)  # holds the eval's lock until the report is written
    try:
        return run_cells(recipe, cells, problems, root, track)
    finally:
        root.close()


def run_cells(
    recipe: EvalRecipe, cells: list[Cell], problems: dict[str, list[Problem]], root: RunDir, track: Track
) -> EvalOutcome:
    """`run_eval` once its run directory is pinned and locked: every cell at once, then the report."""
    endpoints: dict[str, LLM] = {}
    opened = [open_cell(cell, recipe, problems[cell.benchmark_label], endpoints) for cell in cells]

    def stages(cell: OpenCell) -> Callable[[str], Progress]:
        return lambda stage: track(f"{stage} {cell.name}")

    async def main() -> list[tuple[Outcome, Outcome]]:
        try:
            return await asyncio.gather(*(cell.run(stages(cell)) for cell in opened))
        finally:
            for llm in endpoints.values():
                await llm.aclose()

    outcome = EvalOutcome(
        [CellOutcome(cell, made, graded) for cell, (made, graded) in zip(opened, asyncio.run(main()), strict=True)]
    )
    if any(root.path.rglob(ATTEMPTS_FILE)):
        outcome.reports = write_report(load_cells([root.path]), root.path, recipe.title)
    else:  # every item failed: nothing to report; the failures are the outcome (exit 1, run again)
        log.warning("%s: no attempts yet, so no report", root.path)
    return outcome
