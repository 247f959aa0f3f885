"""`qednano eval RECIPE`: the whole EVAL flow over several benchmarks, models and scaffolds.

An eval recipe names benchmarks (each a recipe of its own under `recipes/benchmarks/`: the
problems and the judge of the benchmark's official protocol), the models to evaluate (by
label), the scaffolds, and `samples`, the number of runs per problem (each sample index is
one run, for mean ± std over runs). `plan()` expands it into one `Cell` per
(benchmark, model, scaffold), each a run directory of its own:

```
<run_dir>/recipe.yaml                                  the eval recipe (pinned)
<run_dir>/<benchmark>/<model>/<scaffold>/recipe.yaml    the cell's resolved recipe (pinned)
                                        problems.jsonl  the problems as loaded
                                        attempts.jsonl  grades/<judge>.jsonl  calls.sqlite
                                        call_stats.jsonl  the calls of every pass (faults, retries)
<run_dir>/report.{md,csv,json,html}  report-problems.csv  cost_vs_score.png
```

Each cell generates and grades in one fan-out (`pipeline.generate_and_grade`: an attempt is
graded as soon as it is written, so the judge works while other problems still generate),
and resumes like any run; the CLI (`cli.py`) drives the cells with progress bars, then `report/build.py`
writes the report over all cells.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from qednano.benchmarks.sources import ProblemSource
from qednano.config import ConfigError, Strict
from qednano.eval.pipeline import Outcome, Progress, generate, generate_and_grade, grade, log_calls
from qednano.grading.inputs import unique
from qednano.grading.judge import JudgeConfig
from qednano.llm.client import LLM, Models
from qednano.llm.types import ModelConfig
from qednano.records import Attempt, Problem
from qednano.scaffolds import Scaffold
from qednano.scaffolds.direct import Direct
from qednano.store import RunDir, atomic_write, read_jsonl

log = logging.getLogger(__name__)

LABEL = r"^(?!\.)[A-Za-z0-9_.+-]{1,64}$"
"""Labels name folders of the run directory: no `/`, and no leading dot (`..` would leave it)."""


class BenchmarkModels(Strict):
    """The models a benchmark's protocol fixes (the policies come from the eval recipe)."""

    judge: ModelConfig
    """The judge model of the benchmark's protocol (a name under `recipes/models/`, or inline)."""


class Benchmark(Strict):
    """One benchmark and its grading protocol: `recipes/benchmarks/<name>.yaml`, or inline in an eval recipe."""

    problems: ProblemSource
    judge: JudgeConfig
    models: BenchmarkModels
    scaffold_settings: dict[str, Any] = Field(default_factory=dict)
    """Settings given to every scaffold that has them and does not set them itself, e.g. `prompt: answer`."""


class ScaffoldRoles(Strict):
    """The scaffold roles of one evaluated model; each defaults to that model (its policy)."""

    summarizer: ModelConfig | None = None
    """Reasoning Cache's summarizer (RC training used a frozen Qwen3-4B-Instruct)."""
    verifier: ModelConfig | None = None
    """The verifier and judge inside scaffolds (Self-Check, Nomos, DSM, the tournaments)."""


def single_turn() -> dict[str, Scaffold]:
    """The default scaffolds: the single-turn baseline only."""
    return {"direct": Direct()}


class EvalRecipe(Strict):
    """`qednano eval RECIPE`: every model with every scaffold on every benchmark, `samples` runs each."""

    run_dir: str
    benchmarks: dict[str, Benchmark] = Field(min_length=1)
    """Benchmarks by label: a name of `recipes/benchmarks/<name>.yaml`, or an inline mapping."""
    models: dict[str, ModelConfig] = Field(min_length=1)
    """The policies to evaluate, by label: a name under `recipes/models/`, or an inline mapping."""
    roles: dict[str, ScaffoldRoles] = Field(default_factory=dict)
    """Per model label, the summarizer and verifier its scaffolds call (names or inline; default: the policy)."""
    scaffolds: dict[str, Scaffold] = Field(default_factory=single_turn, min_length=1)
    """Scaffolds by label: a preset name under `recipes/scaffolds/`, or inline (`direct` is Table 2's baseline)."""
    samples: int = Field(1, ge=1)
    """Runs per problem; each sample index is one run (mean ± sample std over runs in the report)."""
    token_budget: int | None = Field(None, ge=1)
    """Most tokens (all calls) one attempt may spend, counted as `budget_counts` says; None for no limit."""
    budget_counts: Literal["total", "output"] = "total"
    """What `token_budget` counts: `total` (input + output tokens) or `output` tokens only (the
    report's token columns count output tokens)."""
    max_inflight: int = Field(1024, ge=1)
    """Most work items started at once within a cell."""
    title: str = "qednano eval"
    """Title of the report."""


@dataclass
class Cell:
    """One (benchmark, model, scaffold) of an eval: a run directory of its own."""

    benchmark_label: str
    benchmark: Benchmark
    model_label: str
    model: ModelConfig
    scaffold_label: str
    scaffold: Any
    """A validated scaffold config (one member of the `Scaffold` union)."""
    run_dir: Path
    roles: ScaffoldRoles = field(default_factory=ScaffoldRoles)

    def recipe(self, eval_recipe: EvalRecipe) -> dict[str, Any]:
        """The cell's resolved recipe, pinned in its directory (what `report/build.py` reads labels from)."""
        models = {"policy": {**self.model.model_dump(mode="json"), "name": self.model_label}}
        for role in ("summarizer", "verifier"):
            config = getattr(self.roles, role)
            if config is not None:  # only when set, so cells pinned before roles existed still resume
                models[role] = config.model_dump(mode="json")
        extra = {"budget_counts": eval_recipe.budget_counts} if eval_recipe.budget_counts != "total" else {}
        return {
            "benchmark": self.benchmark_label,
            "run_dir": str(self.run_dir),
            "problems": self.benchmark.problems.model_dump(mode="json"),
            "models": models,
            "scaffold": {**self.scaffold.model_dump(mode="json"), "label": self.scaffold_label},
            "samples": eval_recipe.samples,
            "token_budget": eval_recipe.token_budget,
            **extra,
            "max_inflight": eval_recipe.max_inflight,
            "judge": self.benchmark.judge.model_dump(mode="json"),
            "judge_model": self.benchmark.models.judge.model_dump(mode="json"),
        }


def with_settings(scaffold: Any, settings: dict[str, Any]) -> Any:
    """`scaffold` with the settings that its class has and it leaves at their defaults, validated again."""
    fields = type(scaffold).model_fields
    applicable = {
        k: v for k, v in settings.items() if k in fields and k != "name" and k not in scaffold.model_fields_set
    }
    if not applicable:
        return scaffold
    return type(scaffold).model_validate({**scaffold.model_dump(), **applicable})


def plan(recipe: EvalRecipe) -> list[Cell]:
    """Every (benchmark, model, scaffold) of the recipe, in recipe order."""
    for kind, labels in (("benchmark", recipe.benchmarks), ("model", recipe.models), ("scaffold", recipe.scaffolds)):
        for label in labels:
            if re.fullmatch(LABEL, label) is None:
                raise ConfigError(
                    f"{kind} label {label!r}: use 1-64 letters, digits and . _ + - only, not starting with a dot"
                )
    unknown = set(recipe.roles) - set(recipe.models)
    if unknown:
        raise ConfigError(f"roles: {sorted(unknown)} name no model of `models:` ({', '.join(recipe.models)})")
    root = Path(recipe.run_dir)
    return [
        Cell(
            b_label,
            bench,
            m_label,
            model,
            s_label,
            with_settings(scaffold, bench.scaffold_settings),
            root / b_label / m_label / s_label,
            recipe.roles.get(m_label, ScaffoldRoles()),
        )
        for b_label, bench in recipe.benchmarks.items()
        for m_label, model in recipe.models.items()
        for s_label, scaffold in recipe.scaffolds.items()
    ]


@dataclass
class OpenCell:
    """A cell ready to run: its store, problems and models."""

    cell: Cell
    recipe: EvalRecipe
    store: RunDir
    problems: list[Problem]
    llms: dict[str, LLM]

    async def generate(self, progress: Progress | None = None) -> Outcome:
        """The cell's attempts: `samples` runs of its scaffold on every problem (finished ones are kept)."""
        return await generate(
            self.problems,
            self.cell.scaffold,
            self.models,
            self.store,
            samples=self.recipe.samples,
            token_budget=self.recipe.token_budget,
            budget_counts=self.recipe.budget_counts,
            max_inflight=self.recipe.max_inflight,
            progress=progress,
        )

    async def grade(self, progress: Progress | None = None) -> Outcome:
        """Grades of every attempt by the benchmark's judge (graded ones are kept)."""
        attempts = unique(self.store.read("attempts.jsonl", Attempt), str(self.store.file("attempts.jsonl")))
        judge = self.cell.benchmark.judge
        return await grade(
            self.problems,
            attempts,
            judge,
            self.judge_llm,
            self.store,
            max_inflight=self.recipe.max_inflight,
            progress=progress,
        )

    @property
    def models(self) -> Models:
        return Models(self.llms["policy"], self.llms.get("summarizer"), self.llms.get("verifier"))

    @property
    def judge_llm(self) -> LLM:
        return self.llms["judge"]

    @property
    def name(self) -> str:
        return f"{self.cell.benchmark_label}/{self.cell.model_label}/{self.cell.scaffold_label}"

    async def run(self, progress: Callable[[str], Progress]) -> tuple[Outcome, Outcome]:
        """Generate and grade in one fan-out, each attempt graded as soon as it is written.

        `progress(stage)` gives the progress callback of each stage (`generate`, `grade`).
        """
        failing = True
        try:
            outcomes = await generate_and_grade(
                self.problems,
                self.cell.scaffold,
                self.models,
                self.cell.benchmark.judge,
                self.judge_llm,
                self.store,
                samples=self.recipe.samples,
                token_budget=self.recipe.token_budget,
                budget_counts=self.recipe.budget_counts,
                max_inflight=self.recipe.max_inflight,
                progress=(progress("generate"), progress("grade")),
            )
            failing = False
            return outcomes
        finally:
            try:
                record_calls(self.store, "eval", self.llms.values(), failing)
            finally:
                self.store.close()


def record_calls(store: RunDir, stage: str, llms: Iterable[LLM], failing: bool) -> None:
    """`log_calls`, except that while another error is on its way out (`failing`) a failure here is only
    logged: on a full disk the first failure (the call cache, say) is the one to show, not this later one."""
    try:
        log_calls(store, stage, llms)
    except (ConfigError, OSError) as err:
        if not failing:
            raise
        log.warning("call counts not recorded: %s", err)


def open_cell(cell: Cell, recipe: EvalRecipe, problems: list[Problem], endpoints: dict[str, LLM]) -> OpenCell:
    """Pin the cell's recipe, write its problems, and give it its models.

    `endpoints` holds one LLM per distinct model config, shared by every cell: each cell
    gets a `with_cache` twin (its own call cache and counters), so a server shared by
    several cells still sees at most its `concurrency` calls.
    """
    store = RunDir(cell.run_dir)
    store.pin(cell.recipe(recipe))
    lines = "".join(p.model_dump_json() + "\n" for p in problems)
    written = store.file("problems.jsonl")
    if not written.is_file():
        atomic_write(written, lines)
    elif written.read_text(encoding="utf-8") != lines:
        # Same recipe, other problems (an edited data file, a new hub revision): the attempts
        # and grades on record answer the old statements; mixing them would corrupt the run.
        old = {p.id: p for p in read_jsonl(written, Problem)}
        changed = [p.id for p in problems if old.get(p.id) != p] + [i for i in old if i not in {p.id for p in problems}]
        raise ConfigError(
            f"{written}: the benchmark's problems changed since this run started "
            f"(first: {changed[0] if changed else '(order)'}); use a new run_dir, or restore the data"
        )

    def llm(config: ModelConfig) -> LLM:
        key = config.model_dump_json()
        if key not in endpoints:
            endpoints[key] = LLM(config)
        return endpoints[key].with_cache(store.cache)

    llms = {"policy": llm(cell.model), "judge": llm(cell.benchmark.models.judge)}
    for role in ("summarizer", "verifier"):
        config = getattr(cell.roles, role)
        if config is not None:
            llms[role] = llm(config)
    return OpenCell(cell, recipe, store, problems, llms)


def pin_eval(recipe: EvalRecipe) -> RunDir:
    """Pin the eval recipe at the top of its run directory (resuming with another one is refused).

    The returned store holds the eval's lock: a second `qednano eval` on the same run
    directory is refused until it is closed.
    """
    store = RunDir(recipe.run_dir)
    store.pin(recipe.model_dump(mode="json"))
    return store


def load_benchmark_problems(recipe: EvalRecipe) -> dict[str, list[Problem]]:
    """Each benchmark's problems, loaded once (before any model is started, so bad data fails early)."""
    out = {}
    for label, bench in recipe.benchmarks.items():
        out[label] = bench.problems.load()
        log.info("%s: %d problems", label, len(out[label]))
        if not out[label]:
            raise ConfigError(f"benchmark {label!r}: no problems selected")
    return out
