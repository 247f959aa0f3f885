"""Grader meta-evaluation: how well a judge agrees with human (or reference) grades.

The last step of the meta-evaluation flow: `qednano grade` runs a judge over attempts that
already carry `human_points` (ProofBench expert ratings, MathArena human grades, a
`HumanGradedFile`), then `agreement()` compares, per judge configuration (and so per
prompt style), the judge's points with the human points:

- **advantage error** (QED-Nano appendix A, the metric of Tables 4 and 5): for each
  problem p and solution i, the advantage is A_i = r_i - mean_j r_j over the solutions of p;
  the error is the mean over all solutions of |A_i(judge) - A_i(human)|. A constant shift
  between graders cancels, as it does for GRPO's group-relative advantages. Rewards are in
  points (0..max_points), the scale of the paper's tables. Only solutions with both a judge
  verdict and a human grade count, and a problem needs at least two of them (with one, both
  advantages are 0 by construction and would only dilute the mean);
- **MAE, RMSE, within-one** (|judge - human| <= 1), **bias** (mean judge - human) and
  **Kendall tau-b**: ProofBench's metrics (Ma et al. 2026);
- **exact**: the share of exact matches, IMO-GradingBench's 4-class accuracy when judge and
  humans both grade on the 7/6/1/0 levels (eval-anchors section 2.3);
- **ungraded rate**: the share of graded attempts whose grade is `points=None`; those are
  left out of every other metric, never counted as zeros.

`agreement_table()` renders results side by side as Markdown.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from qednano.config import ConfigError, Strict, find_file
from qednano.grading.fence import INJECTION_FLAG
from qednano.records import Attempt, Grade, Problem
from qednano.store import read_jsonl


@dataclass(frozen=True)
class Agreement:
    """Agreement of one judge configuration with human grades."""

    judge: str
    style: str
    n: int
    """Attempts with both a judge verdict and a human grade."""
    graded: int
    """Attempts with a human grade and a Grade from this judge (with or without a verdict)."""
    ungraded_rate: float
    advantage_error: float
    mae: float
    rmse: float
    within_one: float
    exact: float
    """Share of attempts whose judge points equal the human points."""
    kendall_tau: float
    bias: float
    injection_flags: int
    """Grades flagged `prompt_injection`."""


def advantages(rewards: dict[str, dict[str, float]]) -> dict[str, float]:
    """Problem-normalised advantages A_i = r_i - mean(r of problem), for {problem: {attempt: reward}}."""
    out = {}
    for by_attempt in rewards.values():
        mean = statistics.fmean(by_attempt.values())
        out.update({a: r - mean for a, r in by_attempt.items()})
    return out


def advantage_error(pairs: Sequence[tuple[str, str, float, float]]) -> float:
    """Mean |A(judge) - A(human)| over (problem_id, attempt_id, judge, human) rows (QED-Nano appendix A).

    Problems with fewer than two rows are left out; NaN when nothing is left.
    """
    judge: dict[str, dict[str, float]] = defaultdict(dict)
    human: dict[str, dict[str, float]] = defaultdict(dict)
    for problem_id, attempt_id, j, h in pairs:
        judge[problem_id][attempt_id] = j
        human[problem_id][attempt_id] = h
    keep = [p for p in judge if len(judge[p]) >= 2]
    if not keep:
        return math.nan
    a_judge = advantages({p: judge[p] for p in keep})
    a_human = advantages({p: human[p] for p in keep})
    return statistics.fmean(abs(a_judge[a] - a_human[a]) for a in a_judge)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties in either variable corrected); NaN when either side is constant."""
    concordant = discordant = ties_x = ties_y = 0
    n = len(x)
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else math.nan


def agreement(attempts: Iterable[Attempt], grades: Iterable[Grade]) -> list[Agreement]:
    """One `Agreement` per judge name found in `grades`, over the attempts with human points."""
    human = {a.id: (a.problem_id, a.human_points) for a in attempts if a.human_points is not None}
    by_judge: dict[str, list[Grade]] = defaultdict(list)
    for g in grades:
        if g.attempt_id in human:
            by_judge[g.judge].append(g)
    results = []
    for judge, rows in sorted(by_judge.items()):
        pairs = [(human[g.attempt_id][0], g.attempt_id, g.points, human[g.attempt_id][1]) for g in rows]
        scored = [(p, a, float(j), float(h)) for p, a, j, h in pairs if j is not None and h is not None]
        diffs = [j - h for _, _, j, h in scored]
        nan = math.nan
        results.append(
            Agreement(
                judge=judge,
                style=str(rows[0].metadata.get("style", "")),
                n=len(scored),
                graded=len(rows),
                ungraded_rate=(len(rows) - len(scored)) / len(rows),
                advantage_error=advantage_error(scored),
                mae=statistics.fmean(abs(d) for d in diffs) if diffs else nan,
                rmse=math.sqrt(statistics.fmean(d * d for d in diffs)) if diffs else nan,
                within_one=statistics.fmean(abs(d) <= 1 for d in diffs) if diffs else nan,
                exact=statistics.fmean(d == 0 for d in diffs) if diffs else nan,
                kendall_tau=kendall_tau([j for *_, j, _ in scored], [h for *_, h in scored]),
                bias=statistics.fmean(diffs) if diffs else nan,
                injection_flags=sum(INJECTION_FLAG in g.flags for g in rows),
            )
        )
    return results


def agreement_table(results: Sequence[Agreement]) -> str:
    """A Markdown table, one row per judge configuration, metrics side by side."""

    def f(value: float, digits: int = 3) -> str:
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"

    head = (
        "| judge | style | n | advantage error | MAE | RMSE | within 1 | exact | Kendall tau | bias | ungraded "
        "| injection flags |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [
        f"| {r.judge} | {r.style} | {r.n} | {f(r.advantage_error)} | {f(r.mae)} | {f(r.rmse)} | "
        f"{f(100 * r.within_one, 1)}% | {f(100 * r.exact, 1)}% | {f(r.kendall_tau)} | {f(r.bias, 2)} | "
        f"{f(100 * r.ungraded_rate, 1)}% | {r.injection_flags} |"
        for r in results
    ]
    return "\n".join([head, *rows]) + "\n"


# ---------------------------------------------------------------------------- human-graded attempts


class HumanGraded(Strict):
    """One line of a human-graded file: a problem, a proof and the points a human gave it."""

    problem: Problem
    proof: str
    human_points: float = Field(ge=0)
    sample: int | None = Field(None, ge=0)
    """Index of this proof among the problem's; default: its position among the file's rows for the problem."""
    scaffold: str = "external"
    """What produced the proof (model or system name)."""
    metadata: dict[str, object] = Field(default_factory=dict)


class HumanGradedFile(Strict):
    """A `problems:` source for meta-evaluation: JSONL of `HumanGraded` rows (problem + proof + human points)."""

    source: Literal["graded"] = "graded"
    path: str
    """JSONL file, from the working directory (else the package's recipes folder)."""

    def read(self) -> tuple[list[Problem], list[Attempt]]:
        path = find_file(self.path)
        if not path.is_file():
            raise ConfigError(f"{path}: human-graded file not found")
        rows = read_jsonl(path, HumanGraded, tolerate_torn_tail=False)
        problems: dict[str, Problem] = {}
        attempts: dict[str, Attempt] = {}
        counts: dict[str, int] = defaultdict(int)
        for line, row in enumerate(rows, start=1):
            p = row.problem
            if problems.setdefault(p.id, p) != p:
                raise ConfigError(f"{path}: row {line}: problem {p.id!r} differs from an earlier row of the same id")
            if row.human_points > p.max_points:
                raise ConfigError(
                    f"{path}: row {line}: human_points {row.human_points} above max_points {p.max_points}"
                )
            sample = counts[p.id] if row.sample is None else row.sample
            counts[p.id] += 1
            attempt_id = Attempt.make_id(p.id, sample)
            if attempt_id in attempts:
                raise ConfigError(f"{path}: row {line}: duplicate attempt {attempt_id!r}")
            attempts[attempt_id] = Attempt(
                id=attempt_id,
                problem_id=p.id,
                sample=sample,
                scaffold=row.scaffold,
                proof=row.proof,
                human_points=row.human_points,
                metadata=dict(row.metadata),
            )
        return list(problems.values()), list(attempts.values())

    def load(self) -> list[Problem]:
        return self.read()[0]

    def attempts(self) -> list[Attempt]:
        """The human-graded attempts (with `human_points`)."""
        return self.read()[1]
