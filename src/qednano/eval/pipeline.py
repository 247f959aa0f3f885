"""`generate()` and `grade()`: one bounded asynchronous fan-out over all work items.

Every (problem, sample) pair, or every attempt to grade, is one task; they all start at
once and the `LLM`s' own concurrency limits keep the servers busy without overload, so a
slow problem never holds back a pool of others. Finished work is skipped on re-run, each
result is appended to the run store the moment it exists, and calls that finished before a
crash replay from the call cache. A work item whose calls fail for good writes nothing:
it is counted, logged, and retried by the next run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from qednano.grading.rubrics import RUBRICS_FILE, check_rubric, normalise_rubric, write_rubric
from qednano.llm.client import LLM, Models, attempt_scope
from qednano.llm.types import LLMError
from qednano.records import Attempt, Grade, Problem
from qednano.scaffolds import ScaffoldRun
from qednano.store import STATS_FILE, RunDir

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
"""Called as progress(done, total) after each finished work item."""


def log_calls(store: RunDir, stage: str, llms: Iterable[LLM]) -> None:
    """Append one `CallTally` line to the run's `call_stats.jsonl` per distinct model that did anything."""
    for llm in {id(m): m for m in llms}.values():
        tally = llm.tally(stage)
        if tally.sent or tally.cached or tally.retries or tally.failures:
            store.append(STATS_FILE, tally)


class Judge(Protocol):
    """Grades one attempt; a judge that gives no verdict returns `points=None`."""

    @property
    def name(self) -> str:
        """Unique per judge configuration and safe as a file name (`grades/<name>.jsonl`)."""
        ...

    async def grade(self, problem: Problem, attempt: Attempt, llm: LLM) -> Grade: ...


@dataclass
class Outcome:
    """What one generate or grade pass did."""

    total: int = 0
    """Work items in scope (problems x samples, or attempts to grade)."""
    skipped: int = 0
    """Already done before this pass (resume)."""
    done: int = 0
    """Finished and written in this pass."""
    failed: dict[str, str] = field(default_factory=dict)
    """Work item id -> reason, for items whose calls failed for good (retried next run)."""


async def fan_out(
    items: Sequence[tuple[str, Callable[[], Awaitable[None]]]],
    outcome: Outcome,
    max_inflight: int,
    progress: Progress | None,
) -> None:
    """Run every item concurrently (at most `max_inflight` at once); record failures by id."""
    gate = asyncio.Semaphore(max_inflight)
    finished = outcome.skipped

    async def one(item_id: str, work: Callable[[], Awaitable[None]]) -> None:
        nonlocal finished
        async with gate:
            try:
                await work()
                outcome.done += 1
            except LLMError as err:
                outcome.failed[item_id] = str(err)
                log.error("%s failed (will be retried on the next run): %s", item_id, err)
        finished += 1
        if progress:
            progress(finished, outcome.total)

    try:
        async with asyncio.TaskGroup() as group:
            for item_id, work in items:
                group.create_task(one(item_id, work))
    except BaseExceptionGroup as errors:
        # Anything but a failed call (bad input such as a missing prompt file, or a bug)
        # stops the pass; raise the error itself so the CLI can report it (exit 2 for bad input).
        raise errors.exceptions[0] from None


async def generate(
    problems: Sequence[Problem],
    scaffold: ScaffoldRun,
    models: Models,
    store: RunDir,
    *,
    samples: int = 1,
    token_budget: int | None = None,
    budget_counts: str = "total",
    max_inflight: int = 1024,
    progress: Progress | None = None,
    file: str = "attempts.jsonl",
) -> Outcome:
    """Run `scaffold` `samples` times on every problem; append one Attempt per finished run.

    `budget_counts`: what `token_budget` counts, `total` (input + output) or `output` tokens.
    """
    done = {a.id for a in store.read(file, Attempt)}
    outcome = Outcome(total=len(problems) * samples)

    def work(problem: Problem, sample: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            attempt_id = Attempt.make_id(problem.id, sample)
            with attempt_scope(attempt_id, token_budget, budget_counts) as scope:
                proof = await scaffold.run(problem, models)
            store.append(
                file,
                Attempt(
                    id=attempt_id,
                    problem_id=problem.id,
                    sample=sample,
                    scaffold=scaffold.name,
                    proof=proof,
                    transcript=scope.completions,
                ),
            )

        return run

    items = []
    for problem in problems:
        for sample in range(samples):
            if Attempt.make_id(problem.id, sample) in done:
                outcome.skipped += 1
            else:
                items.append((Attempt.make_id(problem.id, sample), work(problem, sample)))
    await fan_out(items, outcome, max_inflight, progress)
    return outcome


async def grade(
    problems: Sequence[Problem],
    attempts: Sequence[Attempt],
    judge: Judge,
    llm: LLM,
    store: RunDir,
    *,
    max_inflight: int = 1024,
    progress: Progress | None = None,
) -> Outcome:
    """Grade every attempt not yet graded by `judge`; append to `grades/<judge>.jsonl`."""
    file = f"grades/{judge.name}.jsonl"
    done = {g.attempt_id for g in store.read(file, Grade)}
    by_id = {p.id: p for p in problems}
    outcome = Outcome(total=len(attempts))

    def work(problem: Problem, attempt: Attempt) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            with attempt_scope(f"grade/{judge.name}/{attempt.id}"):
                result = await judge.grade(problem, attempt, llm)
            store.append(file, result)

        return run

    items = []
    for attempt in attempts:
        if attempt.id in done:
            outcome.skipped += 1
        elif attempt.problem_id not in by_id:
            outcome.failed[attempt.id] = f"problem {attempt.problem_id!r} is not in the problem set"
        else:
            items.append((attempt.id, work(by_id[attempt.problem_id], attempt)))
    await fan_out(items, outcome, max_inflight, progress)
    return outcome


async def write_rubrics(
    problems: list[Problem],
    llm: LLM,
    store: RunDir,
    *,
    tries: int = 3,
    max_inflight: int = 1024,
    progress: Progress | None = None,
) -> Outcome:
    """The `rubrics` stage: append every problem, with a rubric, to `problems.jsonl` in the run directory.

    A problem that already has a rubric (from its dataset) keeps it, normalised to the
    canonical form, without a call. Problems already in the file are skipped (resume); a
    problem whose rubric fails every try is reported and written nothing, like any failure.
    """
    done = {p.id for p in store.read(RUBRICS_FILE, Problem)}
    outcome = Outcome(total=len(problems))

    def work(problem: Problem) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            if problem.rubric.strip():
                rubric, by = normalise_rubric(problem.rubric, problem.max_points), "dataset"
                check = check_rubric(rubric, problem.max_points)
                if not check.ok:
                    log.warning("%s: the dataset rubric does not pass the check (%s); kept", problem.id, check.reason)
            else:
                with attempt_scope(f"rubric/{problem.id}"):
                    rubric, by = await write_rubric(problem, llm, tries=tries), llm.name
            metadata = {**problem.metadata, "rubric_by": by}
            store.append(RUBRICS_FILE, problem.model_copy(update={"rubric": rubric, "metadata": metadata}))

        return run

    items = []
    for problem in problems:
        if problem.id in done:
            outcome.skipped += 1
        else:
            items.append((problem.id, work(problem)))
    await fan_out(items, outcome, max_inflight, progress)
    return outcome
