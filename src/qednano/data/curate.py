"""`qednano curate RECIPE`: sources -> filters -> decontamination -> LLM quality filter -> curated problems.

The first stage of the DATA flow (QED-Nano section 3). The run directory holds:

```
runs/<curate>/
  recipe.yaml          the pinned recipe (resuming with another is refused)
  calls.sqlite         the quality filter's calls: a re-run replays them, nothing is re-sent
  problems.jsonl       the curated problems (Problem records; `metadata.quality` holds the LLM flags)
  rejects.jsonl        every dropped problem with its stage and reason (`Reject` records)
  contamination.md     per benchmark: matches at each threshold, matched pairs side by side (.json too)
  report.md            the funnel (problems left after each stage), the rejects by stage, the flags
  funnel.json
```

The cheap stages run first so that the LLM sees only problems that survived them: the rule
filters in order (`filters.py`), duplicates, the year range and the benchmark matching
(`decontaminate.py`), then the quality filter. A quality call that fails for good leaves
its problem *pending* (neither kept nor rejected, listed in the report); the outputs are
written anyway and a re-run finishes the pending problems from the call cache.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qednano.benchmarks.sources import ProblemSource
from qednano.config import ConfigError, Strict
from qednano.data.decontaminate import ContaminationReport, Decontamination, decontaminate, in_years, normalise
from qednano.data.filters import FLAGS, QualityFilter, RuleFilters, assess, quality_reason, rule_filters
from qednano.data.sources import CorpusSource, unique_ids
from qednano.eval.pipeline import Outcome, Progress, fan_out, log_calls
from qednano.llm.client import LLM, attempt_scope
from qednano.llm.types import ModelConfig
from qednano.records import Problem
from qednano.store import RunDir, atomic_write

log = logging.getLogger(__name__)

PROBLEMS_FILE = "problems.jsonl"
REJECTS_FILE = "rejects.jsonl"


class BenchmarkProblems(BaseModel):
    """A benchmark to decontaminate against: its `problems:` (a benchmark recipe's grading keys are ignored)."""

    model_config = ConfigDict(extra="ignore")
    problems: ProblemSource


class CurateModels(Strict):
    filter: ModelConfig | None = None
    """The quality filter's model (GPT-5-Nano in the paper)."""


class CurateRecipe(Strict):
    """`qednano curate RECIPE`: where problems come from, how they are filtered, where the result goes."""

    run_dir: str
    sources: list[CorpusSource] = Field(min_length=1)
    filters: RuleFilters = Field(default_factory=RuleFilters)
    quality: QualityFilter = Field(default_factory=QualityFilter)
    decontamination: Decontamination = Field(default_factory=Decontamination)
    benchmarks: dict[str, BenchmarkProblems] = Field(default_factory=dict)
    """Benchmark names (`recipes/benchmarks/`) or inline `{problems: ...}` blocks to decontaminate against."""
    models: CurateModels = Field(default_factory=CurateModels)
    max_inflight: int = Field(default=256, ge=1)


class Reject(Strict):
    """One dropped problem: the stage that dropped it and why (a line of `rejects.jsonl`)."""

    stage: str
    reason: str
    problem: Problem


@dataclass
class Stage:
    """One funnel step: how many problems it dropped and how many were left after it."""

    name: str
    dropped: int
    left: int


@dataclass
class CurateOutcome:
    """What `curate` wrote and counted."""

    problems: list[Problem]
    rejects: list[Reject]
    funnel: list[Stage]
    pending: dict[str, str] = field(default_factory=dict)
    """Problems whose quality call failed for good (id -> reason); a re-run finishes them."""
    contamination: ContaminationReport | None = None
    files: list[Path] = field(default_factory=list)
    calls: Outcome = field(default_factory=Outcome)


class Funnel:
    """The problems still in, the rejects and the counts after each stage."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.rejects: list[Reject] = []
        self.stages = [Stage("loaded", 0, len(problems))]

    def apply(self, name: str, check: Callable[[Problem], str | None]) -> None:
        kept = []
        for p in self.problems:
            reason = check(p)
            if reason is None:
                kept.append(p)
            else:
                self.rejects.append(Reject(stage=name, reason=reason, problem=p))
        self.record(name, kept)

    def record(self, name: str, kept: list[Problem]) -> None:
        self.stages.append(Stage(name, len(self.problems) - len(kept), len(kept)))
        self.problems = kept


def duplicates() -> Callable[[Problem], str | None]:
    seen: dict[str, str] = {}

    def check(problem: Problem) -> str | None:
        key = normalise(problem.statement)
        if key in seen:
            return f"duplicate of {seen[key]}"
        seen[key] = problem.id
        return None

    return check


async def run_quality(
    problems: list[Problem], llm: LLM, config: QualityFilter, max_inflight: int, progress: Progress | None
) -> tuple[dict[str, dict[str, Any] | None], Outcome]:
    """The quality verdict of every problem (None: unparsable); problems whose calls failed are in `failed`."""
    verdicts: dict[str, dict[str, Any] | None] = {}
    outcome = Outcome(total=len(problems))

    def work(problem: Problem) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            with attempt_scope(f"quality/{problem.id}"):
                verdicts[problem.id] = await assess(problem, llm, config)

        return run

    try:
        await fan_out([(p.id, work(p)) for p in problems], outcome, max_inflight, progress)
    finally:
        await llm.aclose()
    return verdicts, outcome


def curate(recipe: CurateRecipe, progress: Progress | None = None) -> CurateOutcome:
    """Load, filter, decontaminate and quality-check; write the run's outputs (see the module docstring)."""
    if recipe.quality.enabled and recipe.models.filter is None:
        raise ConfigError("the quality filter needs models.filter (or quality.enabled=false)")
    store = RunDir(recipe.run_dir)
    store.pin(recipe.model_dump(mode="json"))
    funnel = Funnel(unique_ids([p for source in recipe.sources for p in source.load()]))
    for name, check in rule_filters(recipe.filters):
        funnel.apply(name, check)
    if recipe.filters.duplicates:
        funnel.apply("duplicate", duplicates())
    report = None
    if recipe.decontamination.enabled:
        years = recipe.decontamination.years
        funnel.apply("year_range", lambda p: in_years(p, years))
        benchmarks = {label: b.problems.load() for label, b in recipe.benchmarks.items()}
        kept, dropped, report = decontaminate(funnel.problems, benchmarks, recipe.decontamination)
        funnel.rejects += [Reject(stage="contamination", reason=r, problem=p) for p, r in dropped]
        funnel.record("contamination", kept)
    outcome = CurateOutcome([], funnel.rejects, funnel.stages, contamination=report)
    if recipe.quality.enabled and recipe.models.filter is not None:
        llm = LLM(recipe.models.filter, store.cache)
        verdicts, calls = asyncio.run(run_quality(funnel.problems, llm, recipe.quality, recipe.max_inflight, progress))
        log_calls(store, "curate", [llm])
        outcome.calls, outcome.pending = calls, dict(calls.failed)
        checked = []
        for p in funnel.problems:
            if p.id in verdicts:
                checked.append(p.model_copy(update={"metadata": {**p.metadata, "quality": verdicts[p.id]}}))
        funnel.record("quality_pending", checked)  # failed calls: neither kept nor rejected until a re-run
        funnel.apply("quality", lambda p: quality_reason(p.metadata.get("quality"), recipe.quality))
    outcome.problems, outcome.rejects = funnel.problems, funnel.rejects
    outcome.files = write_outputs(store, outcome)
    return outcome


def write_outputs(store: RunDir, outcome: CurateOutcome) -> list[Path]:
    lines = {
        PROBLEMS_FILE: "".join(p.model_dump_json() + "\n" for p in outcome.problems),
        REJECTS_FILE: "".join(r.model_dump_json() + "\n" for r in outcome.rejects),
        "funnel.json": json.dumps([s.__dict__ for s in outcome.funnel], indent=1),
        "report.md": report_markdown(outcome),
    }
    if outcome.contamination is not None:
        lines["contamination.md"] = outcome.contamination.markdown()
        lines["contamination.json"] = json.dumps(outcome.contamination.as_json(), indent=1, ensure_ascii=False)
    paths = []
    for name, text in lines.items():
        atomic_write(store.file(name), text)
        paths.append(store.file(name))
    return paths


def report_markdown(outcome: CurateOutcome) -> str:
    lines = ["# Curation report", "", "## Funnel", "", "| stage | dropped | left |", "|---|---|---|"]
    lines += [f"| {s.name} | {s.dropped} | {s.left} |" for s in outcome.funnel]
    if outcome.pending:
        lines += ["", f"{len(outcome.pending)} problems are pending (their quality call failed; run again):", ""]
        lines += [f"- `{k}`: {v}" for k, v in list(outcome.pending.items())[:20]]
    checked = [r.problem for r in outcome.rejects if r.stage == "quality"] + outcome.problems
    verdicts = [p.metadata.get("quality") for p in checked if "quality" in p.metadata]
    if verdicts:
        flags = Counter(f for v in verdicts if v for f in FLAGS if v.get(f))
        unparsed = sum(v is None for v in verdicts)
        lines += ["", "## Quality flags", "", f"{len(verdicts)} checked, {unparsed} without a parsable verdict.", ""]
        lines += ["| flag | problems |", "|---|---|"] + [f"| {f} | {flags[f]} |" for f in FLAGS]
    lines += ["", "## Rejects by stage (first reasons)", ""]
    by_stage: dict[str, list[Reject]] = {}
    for r in outcome.rejects:
        by_stage.setdefault(r.stage, []).append(r)
    for stage, rejects in by_stage.items():
        lines.append(
            f"- **{stage}** ({len(rejects)}): " + "; ".join(f"`{r.problem.id}` {r.reason}" for r in rejects[:3])
        )
    if outcome.contamination is not None:
        lines += ["", "Contamination: see contamination.md."]
    return "\n".join(lines) + "\n"
