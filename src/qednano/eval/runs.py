"""Run recipes for `qednano generate`, `grade` and `rubrics`, and how their models are built.

A run recipe names the run directory, the problems, the models by role, the scaffold and
the number of samples. `open_run()` pins the resolved recipe in the run directory and
builds one `LLM` per distinct model, all sharing the run's call cache.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from qednano.benchmarks.sources import ProblemSource
from qednano.config import ConfigError, Strict
from qednano.grading.agreement import HumanGradedFile
from qednano.grading.judge import JudgeConfig
from qednano.llm.client import LLM, Models
from qednano.llm.types import ModelConfig
from qednano.scaffolds import Scaffold
from qednano.scaffolds.direct import Direct
from qednano.store import RunDir


class ModelRoles(Strict):
    """Models by role; `summarizer` and `verifier` default to the policy."""

    policy: ModelConfig | None = None
    """Needed to generate; a grading-only run (meta-evaluation) may leave it out."""
    summarizer: ModelConfig | None = None
    verifier: ModelConfig | None = None
    judge: ModelConfig | None = None
    """Grades attempts (`qednano grade`) with every judge in the recipe's `judges:`."""
    rubric_writer: ModelConfig | None = None
    """Writes rubrics (`qednano rubrics`); defaults to the judge."""


class RunRecipe(Strict):
    """`qednano generate RECIPE`: run a scaffold over problems and store the attempts."""

    run_dir: str
    """Where the run lives; re-running the same recipe resumes it."""
    problems: ProblemSource | HumanGradedFile
    models: ModelRoles
    scaffold: Scaffold = Field(default_factory=Direct)
    samples: int = Field(1, ge=1)
    """Attempts per problem."""
    token_budget: int | None = Field(None, ge=1)
    """Most tokens (all calls) one attempt may spend, counted as `budget_counts` says; None for no limit."""
    budget_counts: Literal["total", "output"] = "total"
    """What `token_budget` counts: `total` (input + output tokens) or `output` tokens only."""
    max_inflight: int = Field(1024, ge=1)
    """Most work items started at once (the models' own concurrency bounds the calls)."""
    judges: list[JudgeConfig] = Field(default_factory=list)
    """`qednano grade`: the judges, each picked by `kind` (`proof`, `answer`); grades go to `grades/<name>.jsonl`."""
    attempts: Literal["generated", "human"] = "generated"
    """What `qednano grade` grades: the run's generated attempts, or the source's human-graded ones (meta-evaluation)."""
    rubric_tries: int = Field(3, ge=1, le=20)
    """`qednano rubrics`: tries per problem until a written rubric passes `check_rubric`."""


def build_llms(roles: ModelRoles, store: RunDir) -> dict[str, LLM]:
    """One LLM per distinct model config, shared by the roles that name it."""
    built: dict[str, LLM] = {}
    by_config: dict[str, LLM] = {}
    for role in ("policy", "summarizer", "verifier", "judge", "rubric_writer"):
        config = getattr(roles, role)
        if config is None:
            continue
        key = config.model_dump_json()
        if key not in by_config:
            by_config[key] = LLM(config, store.cache)
        built[role] = by_config[key]
    return built


def open_run(recipe: RunRecipe) -> tuple[RunDir, dict[str, LLM]]:
    """Pin the recipe in its run directory and build its models."""
    store = RunDir(recipe.run_dir)
    store.pin(recipe.model_dump(mode="json"))
    return store, build_llms(recipe.models, store)


def models_for(llms: dict[str, LLM]) -> Models:
    if "policy" not in llms:
        raise ConfigError("models.policy is required to generate attempts")
    return Models(llms["policy"], llms.get("summarizer"), llms.get("verifier"))
