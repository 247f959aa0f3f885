"""The command line: `qednano <command> RECIPE [key=value ...]`.

The CLI is the only place that prints: it loads the recipe, shows a progress bar, and
exits 0 when all work is done, 1 when some work items failed (run again to retry them),
2 on bad input (recipe, data file, arguments), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from qednano import __version__
from qednano import config as cfg
from qednano.config import ConfigError
from qednano.data.curate import CurateRecipe, curate
from qednano.data.export import ExportRecipe, export
from qednano.eval.cells import EvalRecipe
from qednano.eval.pipeline import Outcome, generate, grade, write_rubrics
from qednano.eval.run import Job, Track, run_eval, run_jobs
from qednano.eval.runs import RunRecipe, models_for, open_run
from qednano.grading.inputs import check_human_attempts, grade_inputs, imported_graders, write_agreement
from qednano.grading.judge import JudgeConfig
from qednano.grading.rubrics import RUBRICS_FILE
from qednano.llm.client import LLM
from qednano.prompts import PromptError
from qednano.store import RunDir
from qednano.train.grpo import run_grpo
from qednano.train.rc import run_rc
from qednano.train.recipes import GRPORecipe, RCRecipe, SFTRecipe
from qednano.train.sft import run_sft

console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())
"""Errors, progress and summaries go to stderr; in a pipe or a file lines are never wrapped at 80 columns."""
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class BadInput(Exception):
    """Raised for user errors that are not in a recipe (arguments, missing files)."""


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def tracker(bar: Progress) -> Track:
    """A `Track` that adds one bar per label to `bar`."""

    def track(label: str) -> Callable[[int, int], None]:
        task = bar.add_task(label, total=None)
        return lambda done, total: bar.update(task, completed=done, total=total)

    return track


def run_stage(stage: str, store: RunDir, llms: dict[str, LLM], jobs: dict[str, Job]) -> Outcome:
    """`run_jobs` with a progress bar per job."""
    with progress_bar() as bar:
        return run_jobs(stage, store, llms, jobs, tracker(bar))


def report_outcome(what: str, outcome: Outcome, llms: dict[str, LLM]) -> int:
    console.print(
        f"{what}: {outcome.done} new, {outcome.skipped} already done, {len(outcome.failed)} failed, of {outcome.total}"
    )
    for role, llm in {id(m): (r, m) for r, m in llms.items()}.values():
        s = llm.stats
        console.print(
            f"  {role} ({llm.name}): {s.sent} calls sent, {s.cached} replayed from cache, {s.retries} retries, "
            f"{s.failures} failed; tokens in/out {s.input_tokens}/{s.output_tokens}; cost ${s.cost:.4f}"
        )
    for item, reason in list(outcome.failed.items())[:10]:
        # ids and reasons carry data and server text: never read them as rich markup
        console.print(f"  [red]failed[/red] {escape(item)}: {escape(reason)}")
    if len(outcome.failed) > 10:
        console.print(f"  and {len(outcome.failed) - 10} more failed (`-v` logs each as it fails)")
    if outcome.failed:
        console.print("Run the same command again to retry the failed items.")
        return EXIT_FAILED
    return EXIT_OK


def cmd_generate(recipe: RunRecipe) -> int:
    """Run the recipe's scaffold over its problems; append the attempts."""
    problems = recipe.problems.load()
    store, llms = open_run(recipe)
    try:
        models = models_for(llms)
        outcome = run_stage(
            "generate",
            store,
            llms,
            {
                "generate": lambda progress: generate(
                    problems,
                    recipe.scaffold,
                    models,
                    store,
                    samples=recipe.samples,
                    token_budget=recipe.token_budget,
                    budget_counts=recipe.budget_counts,
                    max_inflight=recipe.max_inflight,
                    progress=progress,
                )
            },
        )
        console.print(f"attempts: {store.file('attempts.jsonl')}")
        return report_outcome("generate", outcome, llms)
    finally:
        store.close()


def cmd_rubrics(recipe: RunRecipe) -> int:
    """Write a rubric for every problem of the recipe into the run's problems.jsonl."""
    if recipe.models.rubric_writer is None and recipe.models.judge is None:
        raise BadInput("`qednano rubrics` needs models.rubric_writer (or models.judge) in the recipe")
    problems = recipe.problems.load()
    store, llms = open_run(recipe)
    try:
        writer = llms.get("rubric_writer") or llms["judge"]
        outcome = run_stage(
            "rubrics",
            store,
            llms,
            {
                "rubrics": lambda progress: write_rubrics(
                    problems,
                    writer,
                    store,
                    tries=recipe.rubric_tries,
                    max_inflight=recipe.max_inflight,
                    progress=progress,
                )
            },
        )
        console.print(f"problems with rubrics: {store.file(RUBRICS_FILE)}")
        return report_outcome("rubrics", outcome, llms)
    finally:
        store.close()


def cmd_grade(recipe: RunRecipe) -> int:
    """Grade the run's attempts with every judge of the recipe (all at once); with human points, write agreement.md.

    Everything that can be checked is checked before the run directory pins the recipe, so
    a corrected recipe is not refused as "a different recipe".
    """
    imported = imported_graders(recipe.problems) if recipe.attempts == "human" else []
    if not recipe.judges and not imported:
        raise BadInput("the recipe has no `judges:` to grade with (nor graders' points to import)")
    if recipe.judges and recipe.models.judge is None:
        raise BadInput("`qednano grade` needs models.judge in the recipe")
    problems = recipe.problems.load()
    if recipe.attempts == "human":
        check_human_attempts(recipe.problems)
    store, llms = open_run(recipe)
    try:
        problems, attempts = grade_inputs(problems, recipe.attempts, recipe.problems, store)

        def job(judge: JudgeConfig) -> Job:
            return lambda progress: grade(
                problems, attempts, judge, llms["judge"], store, max_inflight=recipe.max_inflight, progress=progress
            )

        outcome = run_stage("grade", store, llms, {f"grade {j.name}": job(j) for j in recipe.judges})
        console.print(f"grades: {store.file('grades')}")
        table = write_agreement(attempts, [j.name for j in recipe.judges] + imported, store)
        if table:
            console.print(f"agreement with human grades ({store.file('agreement.md')}):\n{table}", highlight=False)
        return report_outcome("grade", outcome, llms)
    finally:
        store.close()


def cmd_eval(recipe: EvalRecipe) -> int:
    """Generate, grade and report every (benchmark, model, scaffold) of an eval recipe (`run_eval`)."""
    with progress_bar() as bar:
        outcome = run_eval(recipe, tracker(bar))
    status = EXIT_OK
    for c in outcome.cells:
        status = max(
            status,
            report_outcome(f"generate {c.cell.name}", c.generated, {}),
            report_outcome(f"grade {c.cell.name}", c.graded, c.cell.llms),
        )
    for path in outcome.reports:
        console.print(f"report: {path}")
    summary = next((p for p in outcome.reports if p.name == "report.json"), None)
    if summary is not None:
        console.print(results_table(json.loads(summary.read_text(encoding="utf-8"))["summaries"]))
    return status


def results_table(summaries: list[dict[str, Any]]) -> Table:
    """The eval's results: one row a cell, mean grade and std over runs, output tokens per problem (report.json)."""
    table = Table(title="Results (mean over runs, std in brackets)")
    for column in ("Benchmark", "Model", "Scaffold", "Grade (%)", "Runs", "Output tokens"):
        table.add_column(
            column, justify="left" if column in ("Benchmark", "Model", "Scaffold") else "right", no_wrap=True
        )
    for s in summaries:
        mean, std = s["score"]["mean"], s["score"]["std"]
        grade = "–" if mean is None else f"{mean:.1f}" + ("" if std is None else f" ({std:.1f})")  # percent already
        table.add_row(
            escape(s["benchmark"]),
            escape(s["model"]),
            escape(s["scaffold"]),
            grade,
            str(s["runs"]),
            f"{s['output_tokens']:.0f}",
        )
    return table


def cmd_curate(recipe: CurateRecipe) -> int:
    """Load the sources, filter, decontaminate and quality-check; write the curated problems and the report."""
    with progress_bar() as bar:
        task = bar.add_task("quality filter", total=None)
        outcome = curate(recipe, lambda done, total: bar.update(task, completed=done, total=total))
    for stage in outcome.funnel:
        console.print(f"  {stage.name:<22} dropped {stage.dropped:>7}  left {stage.left:>7}", highlight=False)
    for path in outcome.files:
        console.print(f"wrote {path}")
    if outcome.pending:
        for item, reason in list(outcome.pending.items())[:10]:
            console.print(f"  [red]pending[/red] {escape(item)}: {escape(reason)}")
        console.print(f"{len(outcome.pending)} problems pending; run the same command again to finish them.")
        return EXIT_FAILED
    return EXIT_OK


def cmd_export(recipe: ExportRecipe) -> int:
    """Write the SFT and RL sets (datasets folder, parquet, JSONL) and their report."""
    outcome = export(recipe)
    sys.stdout.write(outcome.report)
    for path in outcome.files:
        console.print(f"wrote {path}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    """Tables, plot and viewer over one or more run directories (a leaderboard when several)."""
    from qednano.report.build import load_cells, write_report

    runs = [Path(r) for r in args.runs]
    out = Path(args.out) if args.out else runs[0] if len(runs) == 1 else Path("report")
    for path in write_report(load_cells(runs), out, args.title):
        console.print(f"report: {path}")
    return EXIT_OK


def cmd_recipes(args: argparse.Namespace) -> int:
    """List the recipes by folder: the shipped ones and those under ./recipes (which win)."""
    for folder, names in cfg.recipe_names().items():
        sys.stdout.write(f"{folder}:\n" + "".join(f"  {name}\n" for name in names))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The built-in offline run: build the tiny local model, then `eval` the demo recipe with it."""
    from qednano.llm.tiny_model import build_tiny_model

    build_tiny_model(Path(".cache/qednano/tiny-model"))
    return cmd_eval(cfg.load(args.recipe, args.overrides, EvalRecipe))


def cmd_train(run: Callable[[Any], Path]) -> Callable[[Any], int]:
    """A training command: run it, say where the model is."""

    def command(recipe: Any) -> int:
        console.print(f"model: {run(recipe)}")
        return EXIT_OK

    return command


COMMANDS: dict[str, tuple[type[BaseModel], Callable[[Any], int], str]] = {
    "generate": (RunRecipe, cmd_generate, "run a scaffold over problems; append attempts"),
    "rubrics": (RunRecipe, cmd_rubrics, "write a marking scheme for each problem; append to problems.jsonl"),
    "grade": (RunRecipe, cmd_grade, "grade the run's attempts with the recipe's judges"),
    "eval": (EvalRecipe, cmd_eval, "generate + grade + report: models x scaffolds x benchmarks"),
    "sft": (SFTRecipe, cmd_train(run_sft), "supervised fine-tuning on an SFT set (TRL SFTTrainer)"),
    "grpo": (GRPORecipe, cmd_train(run_grpo), "GRPO on an RL set, rewarded by the judge (TRL GRPOTrainer)"),
    "rc": (RCRecipe, cmd_train(run_rc), "Reasoning-Cache RL: GRPO over summarise-and-refine states"),
    "curate": (CurateRecipe, cmd_curate, "filter and decontaminate training problems; write problems, rejects, report"),
    "export": (
        ExportRecipe,
        cmd_export,
        "write the SFT and RL sets (datasets folder, parquet, JSONL; optional hub push)",
    ),
}


def describe(help_text: str, run: Callable[[Any], int]) -> str:
    """A subcommand's `--help` description: its one-line help, then its function's docstring."""
    doc = inspect.cleandoc(run.__doc__ or "").split("\n\n")[0]
    return f"{help_text[0].upper()}{help_text[1:]}.\n\n{doc}".strip()


RECIPE_HELP = "a recipe file, or the name of a shipped one (`qednano recipes` lists them)"
OVERRIDE_HELP = "dotted key=value overrides of the recipe (e.g. samples=4 models.policy.temperature=0.6)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qednano", description="Train and evaluate small olympiad provers.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)
    form = argparse.RawDescriptionHelpFormatter
    for name, (_, run, help_text) in COMMANDS.items():
        c = sub.add_parser(name, help=help_text, description=describe(help_text, run), formatter_class=form)
        c.add_argument("recipe", help=RECIPE_HELP)
        c.add_argument("overrides", nargs="*", help=OVERRIDE_HELP)
        c.add_argument("--dry-run", action="store_true", help="print the resolved recipe and exit")
    help_text = "the built-in offline run on a tiny local model"
    demo = sub.add_parser("demo", help=help_text, description=describe(help_text, cmd_demo), formatter_class=form)
    demo.add_argument("recipe", nargs="?", default="demo", help=RECIPE_HELP + " (default: demo)")
    demo.add_argument("overrides", nargs="*", help=OVERRIDE_HELP)
    help_text = "tables, plot and HTML viewer over run directories"
    report = sub.add_parser("report", help=help_text, description=describe(help_text, cmd_report), formatter_class=form)
    report.add_argument("runs", nargs="+", help="run directories (an eval's, or single runs)")
    report.add_argument("--out", help="output folder (default: the run, or ./report for several)")
    report.add_argument("--title", default="qednano report", help="the report's title")
    help_text = "list the shipped recipes (models, benchmarks, scaffolds, runs)"
    sub.add_parser("recipes", help=help_text, description=describe(help_text, cmd_recipes), formatter_class=form)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: logging.Handler = RichHandler(console=console, show_path=False)
    if not console.is_terminal:  # a pipe or a file: whole lines, never wrapped at 80 columns
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(message)s",
        handlers=[handler],
    )
    logging.captureWarnings(True)  # Python warnings through the one rich handler, not printed a second time plain
    for noisy in ("httpx", "httpx2", "openai", "httpcore", "httpcore2"):  # openai >= 2 uses httpx2
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.root.level))
    try:
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "recipes":
            return cmd_recipes(args)
        schema, run, _ = COMMANDS[args.command]
        recipe = cfg.load(args.recipe, args.overrides, schema)
        if args.dry_run:
            sys.stdout.write(cfg.dump(recipe))
            return EXIT_OK
        return run(recipe)
    except (ConfigError, PromptError, BadInput) as err:
        console.print(f"[red]error:[/red] {escape(str(err))}", markup=True, highlight=False)
        return EXIT_BAD_INPUT
    except OSError as err:  # a file the store or a loader could not read or write (full disk, permissions)
        where = f"{err.filename}: " if err.filename else ""
        console.print(f"[red]error:[/red] {escape(where + (err.strerror or str(err)))}", highlight=False)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        console.print("interrupted; finished work is saved, run again to resume")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
