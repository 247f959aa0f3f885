"""`generate()` and `grade()`: one bounded asynchronous fan-out over all work items.

Every (problem, sample) pair, or every attempt to grade, is one task; they all start at
once and the `LLM`s' own concurrency limits keep the servers busy without overload, so a
slow problem never holds back a pool of others. Finished work is skipped on re-run, each
result is appended to the run store the moment it exists, and calls that finished before a
crash replay from the call cache. A work item whose calls fail for good writes nothing:
it is counted, logged, and retried by the next run.

`generate_and_grade()` streams the two: each attempt is graded the moment it is written,
in the same fan-out, so the judge's calls fill the server while other problems still
generate and the pass ends within one judge call of the generation alone (an eval cell).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from qednano.grading.rubrics import RUBRICS_FILE, check_rubric, normalise_rubric, write_rubric
from qednano.llm.client import LLM, Models, attempt_scope
from qednano.llm.types import LLMError
from qednano.records import Attempt, Grade, Problem
from qednano.scaffolds import ScaffoldRun
from qednano.store import STATS_FILE, RunDir

log = logging.getLogger(__name__)

T = TypeVar("T")

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


class Tracker:
    """Counts one stage's finished items into its `Outcome` and reports progress."""

    def __init__(self, outcome: Outcome, progress: Progress | None) -> None:
        self.outcome = outcome
        self.progress = progress
        self.finished = outcome.skipped

    async def run(self, item_id: str, work: Callable[[], Awaitable[T]]) -> T | None:
        """The item's result; None when its calls failed for good (recorded, retried by the next run)."""
        result: T | None = None
        try:
            result = await work()
            self.outcome.done += 1
        except LLMError as err:
            self.outcome.failed[item_id] = str(err)
            # INFO, not ERROR: the outcome carries every failure, and the CLI prints them once at the end
            log.info("%s failed (will be retried on the next run): %s", item_id, err)
        self.finished += 1
        if self.progress:
            self.progress(self.finished, self.outcome.total)
        return result


async def run_all(works: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Await every work item concurrently; anything but a failed call stops them all."""
    try:
        async with asyncio.TaskGroup() as group:
            for work in works:
                group.create_task(work)
    except BaseExceptionGroup as errors:
        # Anything but a failed call (bad input such as a missing prompt file, or a bug)
        # stops the pass; raise the error itself so the CLI can report it (exit 2 for bad input).
        raise errors.exceptions[0] from None


async def fan_out(
    items: Sequence[tuple[str, Callable[[], Awaitable[None]]]],
    outcome: Outcome,
    max_inflight: int,
    progress: Progress | None,
) -> None:
    """Run every item concurrently (at most `max_inflight` at once); record failures by id."""
    gate = asyncio.Semaphore(max_inflight)
    tracker = Tracker(outcome, progress)

    async def one(item_id: str, work: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await tracker.run(item_id, work)

    await run_all(one(item_id, work) for item_id, work in items)


def attempt_maker(
    scaffold: ScaffoldRun,
    models: Models,
    store: RunDir,
    file: str,
    token_budget: int | None,
    budget_counts: str = "total",
) -> Callable[[Problem, int], Awaitable[Attempt]]:
    """`make(problem, sample)`: run the scaffold once and append the Attempt to `file`."""

    async def make(problem: Problem, sample: int) -> Attempt:
        attempt_id = Attempt.make_id(problem.id, sample)
        with attempt_scope(attempt_id, token_budget, budget_counts) as scope:
            proof = await scaffold.run(problem, models)
        attempt = Attempt(
            id=attempt_id,
            problem_id=problem.id,
            sample=sample,
            scaffold=scaffold.name,
            proof=proof,
            transcript=scope.completions,
        )
        store.append(file, attempt)
        return attempt

    return make


def grader(judge: Judge, llm: LLM, store: RunDir) -> Callable[[Problem, Attempt], Awaitable[Grade]]:
    """`mark(problem, attempt)`: grade one attempt and append the Grade to `grades/<judge>.jsonl`."""

    async def mark(problem: Problem, attempt: Attempt) -> Grade:
        with attempt_scope(f"grade/{judge.name}/{attempt.id}"):
            result = await judge.grade(problem, attempt, llm)
        store.append(f"grades/{judge.name}.jsonl", result)
        return result

    return mark


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
    make = attempt_maker(scaffold, models, store, file, token_budget, budget_counts)

    def work(problem: Problem, sample: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await make(problem, sample)

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

    mark = grader(judge, llm, store)

    def work(problem: Problem, attempt: Attempt) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await mark(problem, attempt)

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


async def generate_and_grade(
    problems: Sequence[Problem],
    scaffold: ScaffoldRun,
    models: Models,
    judge: Judge,
    judge_llm: LLM,
    store: RunDir,
    *,
    samples: int = 1,
    token_budget: int | None = None,
    budget_counts: str = "total",
    max_inflight: int = 1024,
    progress: tuple[Progress | None, Progress | None] = (None, None),
) -> tuple[Outcome, Outcome]:
    """`generate()` and `grade()` in one fan-out: each attempt is graded as soon as it is written.

    Attempts already on record and not yet graded by `judge` are graded at once. Generation
    holds at most `max_inflight` items at a time and grading as many more, so an attempt
    waiting for its judge never holds back a generation. Returns (generated, graded);
    `progress` is the pair of their callbacks.
    """
    file = "attempts.jsonl"
    existing = {a.id: a for a in store.read(file, Attempt)}
    graded = {g.attempt_id for g in store.read(f"grades/{judge.name}.jsonl", Grade)}
    made = Outcome(total=len(problems) * samples)
    marked = Outcome(total=len(problems) * samples)
    make, mark = (
        attempt_maker(scaffold, models, store, file, token_budget, budget_counts),
        grader(judge, judge_llm, store),
    )
    generating, grading = Tracker(made, progress[0]), Tracker(marked, progress[1])
    generate_gate, grade_gate = asyncio.Semaphore(max_inflight), asyncio.Semaphore(max_inflight)

    async def one(problem: Problem, sample: int, attempt: Attempt | None) -> None:
        attempt_id = Attempt.make_id(problem.id, sample)
        if attempt is None:
            async with generate_gate:
                attempt = await generating.run(attempt_id, lambda: make(problem, sample))
            if attempt is None:  # nothing written, so nothing to grade: the next run does both
                marked.total -= 1
                return
        async with grade_gate:
            await grading.run(attempt_id, lambda: mark(problem, attempt))

    works = []
    for problem in problems:
        for sample in range(samples):
            attempt_id = Attempt.make_id(problem.id, sample)
            found = existing.get(attempt_id)
            if found is not None:
                made.skipped += 1
                if attempt_id in graded:
                    marked.skipped += 1
                    continue
            works.append(one(problem, sample, found))
    await run_all(works)
    return made, marked


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
