"""Statistics of the EVAL flow's last stage: scores, tokens, costs and quality counts per run.

A `CellRecords` is what one run directory holds under one judge: the problems, the attempts of one
(benchmark, model, scaffold) system and the judge's grades. `summarize()` turns it into the
numbers of the paper's Tables 1 and 2 (QED-Nano section 5): each sample index is one run,
the score is the mean over runs of the run's mean score, and the spread is the sample
standard deviation (ddof=1) of the run means, as in QED-Nano's `stats.py`. Unlike that
script, an ungraded attempt (`points=None`, or no grade yet) is never a zero: it is left
out of every mean and counted. `build.py` renders these numbers; `viewer.py` shows them.

For a grader meta-evaluation run (attempts that carry human points), `run_agreements()`
gives each judge's agreement with the human grades, computed by `grading/agreement.py`.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from qednano.grading.agreement import Agreement, agreement
from qednano.records import Attempt, Grade, Problem


@dataclass
class CellRecords:
    """One run directory under one judge: a (benchmark, model, scaffold) system's records."""

    path: Path
    benchmark: str
    model: str
    scaffold: str
    judge: str
    """The judge whose grades these are; empty when the run has no grades yet."""
    problems: dict[str, Problem]
    attempts: list[Attempt]
    grades: dict[str, Grade]
    """Attempt id -> grade (the last one written, when a judge graded an attempt twice)."""
    samples: int | None = None
    """Runs the recipe asked for (to count missing attempts); None when unknown."""
    calls: dict[str, int] = field(default_factory=dict)
    """The run's model calls over all its passes (`call_stats.jsonl`): `sent`, `cached`, `retries`,
    `failed` (calls that gave up), `faults` (transient failures) and `fault:<kind>`; empty when unknown."""

    @property
    def label(self) -> str:
        return f"{self.model} / {self.scaffold}"

    def subset_of(self, problem_id: str) -> str:
        problem = self.problems.get(problem_id)
        return str(problem.metadata.get("subset", "")) if problem else ""

    def category_of(self, problem_id: str) -> str:
        problem = self.problems.get(problem_id)
        return str(problem.metadata.get("category", "")) if problem else ""


@dataclass
class Score:
    """Mean score in percent over runs, with the sample std of the run means."""

    mean: float | None
    """Mean of the run means, in percent; None when nothing is graded."""
    std: float | None
    """Sample standard deviation (ddof=1) of the run means, in percent; None for fewer than 2 runs."""
    runs: dict[int, float]
    """Run (sample index) -> mean score of its graded attempts, in percent."""
    graded: int
    ungraded: int
    """Attempts whose grade has `points=None` or that have no grade yet: excluded from the means."""


def score(items: Iterable[tuple[int, float | None]]) -> Score:
    """Score of (run, fraction of max points or None) pairs: mean and sample std over run means."""
    by_run: dict[int, list[float]] = defaultdict(list)
    ungraded = 0
    for run, fraction in items:
        if fraction is None:
            ungraded += 1
        else:
            by_run[run].append(fraction)
    runs = {run: 100 * statistics.fmean(values) for run, values in sorted(by_run.items())}
    means = list(runs.values())
    return Score(
        mean=statistics.fmean(means) if means else None,
        std=statistics.stdev(means) if len(means) >= 2 else None,
        runs=runs,
        graded=sum(len(v) for v in by_run.values()),
        ungraded=ungraded,
    )


@dataclass
class ProblemRow:
    """One problem of one cell: its score over the runs and what went wrong."""

    problem_id: str
    subset: str
    category: str
    points: dict[int, float | None]
    """Run -> points (None = ungraded)."""
    max_points: int
    mean: float | None
    """Mean score over graded runs, percent."""
    ungraded: int
    flags: list[str]
    truncated: int
    output_tokens: float


@dataclass
class Summary:
    """The numbers of one cell: Table 1 and Table 2 columns, quality counts, per-problem rows."""

    benchmark: str
    model: str
    scaffold: str
    judge: str
    path: str
    problems: int
    """Problems with at least one attempt."""
    runs: int
    """Distinct sample indices among the attempts."""
    attempts: int
    missing: int | None
    """Attempts the recipe asked for that do not exist (failed generations); None when unknown."""
    score: Score
    subsets: dict[str, Score]
    categories: dict[str, Score]
    ungraded: int
    """Grades with `points=None` (the judge gave no verdict)."""
    pending: int
    """Attempts with no grade from this judge yet."""
    flagged: int
    """Grades carrying at least one flag."""
    flags: dict[str, int]
    truncated: int
    truncation_rate: float
    output_tokens: float
    """Mean output tokens per attempt (one attempt = one problem in one run)."""
    total_tokens: float
    """Mean input + output tokens per attempt."""
    cost: float
    """Mean USD per attempt (the policy's calls)."""
    total_cost: float
    judge_cost: float
    """USD spent by the judge over all grades."""
    tokens_vs_direct: float | None = None
    """Output tokens per attempt relative to the `direct` run of the same model and benchmark."""
    per_problem: list[ProblemRow] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    """The run's model calls over all passes (see `CellRecords.calls`): faults, retries, failed calls."""

    @property
    def label(self) -> str:
        return f"{self.model} / {self.scaffold}"


def fraction(grade: Grade | None) -> float | None:
    if grade is None or grade.points is None or grade.max_points <= 0:
        return None
    return grade.points / grade.max_points


def summarize(cell: CellRecords) -> Summary:
    attempts = cell.attempts
    pairs = [(a.sample, fraction(cell.grades.get(a.id))) for a in attempts]
    grades = [cell.grades[a.id] for a in attempts if a.id in cell.grades]
    flag_counts = Counter(flag for g in grades for flag in g.flags)
    problem_ids = list(dict.fromkeys(a.problem_id for a in attempts))
    runs = len({a.sample for a in attempts})
    n = len(attempts) or 1
    return Summary(
        benchmark=cell.benchmark,
        model=cell.model,
        scaffold=cell.scaffold,
        judge=cell.judge,
        path=str(cell.path),
        problems=len(problem_ids),
        runs=runs,
        attempts=len(attempts),
        missing=None if cell.samples is None else max(0, len(cell.problems) * cell.samples - len(attempts)),
        score=score(pairs),
        subsets=grouped(cell, pairs, cell.subset_of),
        categories=grouped(cell, pairs, cell.category_of),
        ungraded=sum(1 for g in grades if g.points is None),
        pending=len(attempts) - len(grades),
        flagged=sum(1 for g in grades if g.flags),
        flags=dict(sorted(flag_counts.items())),
        truncated=sum(1 for a in attempts if a.truncated),
        truncation_rate=sum(1 for a in attempts if a.truncated) / n,
        output_tokens=sum(a.output_tokens for a in attempts) / n,
        total_tokens=sum(a.input_tokens + a.output_tokens for a in attempts) / n,
        cost=sum(a.cost for a in attempts) / n,
        total_cost=sum(a.cost for a in attempts),
        judge_cost=sum(c.cost for g in grades for c in g.transcript),
        per_problem=[problem_row(cell, pid) for pid in problem_ids],
        calls=dict(cell.calls),
    )


def grouped(cell: CellRecords, pairs: list[tuple[int, float | None]], key_of: Callable[[str], str]) -> dict[str, Score]:
    """Scores per value of a problem property (subset, category); empty when no problem has one."""
    groups: dict[str, list[tuple[int, float | None]]] = defaultdict(list)
    for attempt, pair in zip(cell.attempts, pairs, strict=True):
        key = key_of(attempt.problem_id)
        if key:
            groups[key].append(pair)
    return {key: score(items) for key, items in sorted(groups.items())}


def problem_row(cell: CellRecords, problem_id: str) -> ProblemRow:
    attempts = sorted((a for a in cell.attempts if a.problem_id == problem_id), key=lambda a: a.sample)
    grades = {a.sample: cell.grades.get(a.id) for a in attempts}
    graded = [fraction(g) for g in grades.values() if fraction(g) is not None]
    problem = cell.problems.get(problem_id)
    max_points = problem.max_points if problem else next((g.max_points for g in grades.values() if g), 7)
    return ProblemRow(
        problem_id=problem_id,
        subset=cell.subset_of(problem_id),
        category=cell.category_of(problem_id),
        points={s: (g.points if g else None) for s, g in grades.items()},
        max_points=max_points,
        mean=100 * statistics.fmean(graded) if graded else None,  # type: ignore[arg-type]
        ungraded=sum(1 for g in grades.values() if fraction(g) is None),
        flags=sorted({flag for g in grades.values() if g for flag in g.flags}),
        truncated=sum(1 for a in attempts if a.truncated),
        output_tokens=sum(a.output_tokens for a in attempts) / (len(attempts) or 1),
    )


def relate_to_direct(summaries: list[Summary]) -> None:
    """Fill `tokens_vs_direct`: tokens over those of the `direct` run of the same model, benchmark and judge."""
    direct = {(s.benchmark, s.model, s.judge): s for s in summaries if s.scaffold == "direct"}
    for s in summaries:
        base = direct.get((s.benchmark, s.model, s.judge))
        if base is not None and base.output_tokens > 0:
            s.tokens_vs_direct = s.output_tokens / base.output_tokens


@dataclass
class Standing:
    """One system on the leaderboard: its score per benchmark and their average."""

    rank: int | None
    """1 for the best average; None for a system with no score (nothing graded), listed last unranked."""
    model: str
    scaffold: str
    judge: str
    scores: dict[str, Score]
    average: float | None
    """Mean over benchmarks of the benchmark scores (percent)."""


def leaderboard(summaries: list[Summary]) -> list[Standing]:
    """Systems ranked by their average score over the benchmarks they were run on; unscored ones last, unranked."""
    systems: dict[tuple[str, str, str], dict[str, Score]] = defaultdict(dict)
    for s in summaries:
        systems[(s.model, s.scaffold, s.judge)][s.benchmark] = s.score
    rows = []
    for (model, scaffold, judge), scores in systems.items():
        means = [sc.mean for sc in scores.values() if sc.mean is not None]
        rows.append((model, scaffold, judge, scores, statistics.fmean(means) if means else None))
    rows.sort(key=lambda r: (r[4] is None, -(r[4] or 0.0), r[0], r[1]))
    return [Standing(i + 1 if row[4] is not None else None, *row) for i, row in enumerate(rows)]


@dataclass
class RunAgreement:
    """The judges' agreement with human grades in one run directory (grader meta-evaluation)."""

    path: Path
    benchmark: str
    results: list[Agreement]
    """One per judge that graded attempts with human points."""


def run_agreements(cells: list[CellRecords]) -> list[RunAgreement]:
    """Per run directory whose attempts carry human points and have grades: every judge's agreement."""
    runs: dict[Path, list[CellRecords]] = defaultdict(list)
    for cell in cells:
        runs[cell.path].append(cell)
    found = []
    for path, group in runs.items():
        attempts = group[0].attempts
        if not any(a.human_points is not None for a in attempts):
            continue
        results = agreement(attempts, [g for cell in group for g in cell.grades.values()])
        if results:
            found.append(RunAgreement(path, group[0].benchmark, results))
    return found
