"""The report stage of the EVAL flow: run directories -> report.{md,csv,json,html} and cost_vs_score.png.

`load_cells()` finds every run directory under the given paths (a directory holding
`attempts.jsonl`; an eval run holds one per benchmark, model and scaffold) and reads its
pinned recipe, problems, attempts and grades (one `CellRecords` per judge). `write_report()`
writes the paper's Table 1 (mean score and std over runs per benchmark, with subsets),
Table 2 (per scaffold: score, tokens, tokens relative to the single-turn `direct` run,
cost), quality counts (ungraded, flagged, truncated, missing; and the faults, retries and
failed calls of every pass, from the run's `call_stats.jsonl`), a leaderboard when there
are several systems, the per-problem breakdown, the cost-versus-score plot (Figure 1,
`plots.py`) and the HTML viewer (`viewer.py`). Numbers come from `scores.py`.

A grader meta-evaluation run (`qednano grade` over attempts with human points) also gets
the judges' agreement with the human grades (`grading/agreement.py`), computed from its grades, or
taken from its `agreement.md` when it has no grades to compute from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from qednano.config import ConfigError
from qednano.grading.agreement import agreement_table
from qednano.grading.inputs import AGREEMENT_FILE, unique
from qednano.records import Attempt, Grade, Problem
from qednano.report.data_files import agreement_json, as_json, problems_csv, summary_csv
from qednano.report.plots import plot_cost_vs_score
from qednano.report.scores import (
    CellRecords,
    ProblemRow,
    RunAgreement,
    Score,
    Standing,
    Summary,
    leaderboard,
    relate_to_direct,
    run_agreements,
    summarize,
)
from qednano.store import STATS_FILE, atomic_write, read_jsonl

log = logging.getLogger(__name__)

REPORT_FILES = ("report.md", "report.csv", "report-problems.csv", "report.json", "report.html", "cost_vs_score.png")


def find_runs(path: Path) -> list[Path]:
    """Run directories at or under `path`: those holding an `attempts.jsonl`."""
    if not path.is_dir():
        raise ConfigError(f"{path}: not a run directory")
    runs = sorted({p.parent for p in path.rglob("attempts.jsonl")})
    if not runs:
        raise ConfigError(f"{path}: no attempts.jsonl found at or under it")
    return runs


def load_cells(paths: list[Path]) -> list[CellRecords]:
    return [cell for path in paths for run in find_runs(path) for cell in load_run(run)]


def load_run(run: Path) -> list[CellRecords]:
    """The cells of one run directory: one per judge file under `grades/` (one ungraded cell if none)."""
    recipe_file = run / "recipe.yaml"
    recipe: dict[str, Any] = {}
    if recipe_file.is_file():
        recipe = yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}
    benchmark, model, scaffold = labels(recipe, run)
    problems = {p.id: p for p in load_problems(run, recipe)}
    attempts = unique(read_jsonl(run / "attempts.jsonl", Attempt), str(run / "attempts.jsonl"))
    samples = recipe.get("samples") if isinstance(recipe.get("samples"), int) else None
    calls = call_totals(run)
    judge_files = sorted((run / "grades").glob("*.jsonl"))
    if not judge_files:
        return [CellRecords(run, benchmark, model, scaffold, "", problems, attempts, {}, samples, calls)]
    cells = []
    for file in judge_files:
        grades = {g.attempt_id: g for g in read_jsonl(file, Grade)}
        cells.append(
            CellRecords(run, benchmark, model, scaffold, file.stem, problems, attempts, grades, samples, calls)
        )
    return cells


def call_totals(run: Path) -> dict[str, int]:
    """The run's `call_stats.jsonl` (one line per model and pass) summed: see `CellRecords.calls`."""
    from qednano.llm.client import CallTally

    totals: dict[str, int] = {}
    for t in read_jsonl(run / STATS_FILE, CallTally):
        counts = {"sent": t.sent, "cached": t.cached, "retries": t.retries, "failed": t.failures}
        counts |= {"faults": sum(t.faults.values())} | {f"fault:{k}": v for k, v in t.faults.items()}
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
    return totals


def labels(recipe: dict[str, Any], run: Path) -> tuple[str, str, str]:
    """(benchmark, model, scaffold) names from a pinned recipe, falling back on the directory name."""
    problems = mapping(recipe.get("problems"))
    benchmark = recipe.get("benchmark") or ""
    if not benchmark and problems:
        source = problems.get("source", "file")
        benchmark = Path(str(problems.get("path", run.name))).stem if source in ("file", "table") else source
    policy = mapping(mapping(recipe.get("models")).get("policy"))
    model = policy.get("name") or Path(str(policy.get("model", ""))).name or "model"
    scaffold = mapping(recipe.get("scaffold"))
    return str(benchmark or run.name), str(model), str(scaffold.get("label") or scaffold.get("name", "direct"))


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def load_problems(run: Path, recipe: dict[str, Any]) -> list[Problem]:
    """`problems.jsonl` of the run (written by `eval`), else the recipe's problems when they are local.

    A relative `path` in the pinned recipe is looked up from the run directory and the folders
    above it (where the run was started from) before the current directory, so a report
    built from elsewhere finds the same file. `source: graded` files count as local too.
    """
    if (run / "problems.jsonl").is_file():
        return read_jsonl(run / "problems.jsonl", Problem)
    block = recipe.get("problems")
    if not isinstance(block, dict) or (block.get("source", "file") != "file" and not block.get("path")):
        return []  # no local copy: the report goes on with problem ids only (no subsets)
    from qednano.benchmarks.sources import ProblemSource
    from qednano.grading.agreement import HumanGradedFile

    block = {**block, "path": str(beside_run(run, str(block["path"])))} if block.get("path") else block
    try:
        return TypeAdapter(ProblemSource | HumanGradedFile).validate_python(block).load()
    except (ConfigError, ValidationError, OSError) as err:
        log.warning("%s: cannot load the run's problems (no subsets in the report): %s", run, err)
        return []


def beside_run(run: Path, path: str) -> Path:
    """A relative recipe path from the run directory or the nearest folder above it that has it; else as given."""
    given = Path(path)
    if given.is_absolute():
        return given
    for folder in (run, *run.resolve().parents):
        if (folder / given).exists():
            return folder / given
    return given


def write_report(cells: list[CellRecords], out: Path, title: str = "qednano report") -> list[Path]:
    """Write every report file into `out`; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    summaries = [summarize(cell) for cell in cells]
    relate_to_direct(summaries)
    standings = leaderboard(summaries)
    agreements = run_agreements(cells)
    data = as_json(summaries, standings, title) | {"agreement": agreement_json(agreements)}
    written = [
        write(out / "report.md", Markdown(summaries, standings, agreement_tables(cells, agreements)).render(title)),
        write(out / "report.csv", summary_csv(summaries)),
        write(out / "report-problems.csv", problems_csv(summaries)),
        write(out / "report.json", json.dumps(data, indent=1, ensure_ascii=False)),
    ]
    from qednano.report.viewer import render_html

    written.append(write(out / "report.html", render_html(cells, summaries, title)))
    plot = plot_cost_vs_score(summaries, out / "cost_vs_score.png")
    if plot is not None:
        written.append(plot)
    return written


def write(path: Path, content: str) -> Path:
    atomic_write(path, content)
    return path


def agreement_tables(cells: list[CellRecords], computed: list[RunAgreement]) -> dict[str, str]:
    """`benchmark (run directory)` -> the Markdown agreement table: from the run's grades, else its agreement.md."""
    tables = {f"{r.benchmark} ({r.path})": agreement_table(r.results) for r in computed}
    done = {r.path for r in computed}
    for cell in cells:
        file = cell.path / AGREEMENT_FILE
        key = f"{cell.benchmark} ({cell.path})"
        if cell.path in done or key in tables or not file.is_file():
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            log.warning("%s: cannot read: %s", file, err)
            continue
        tables[key] = text[text.find("|") :] if "|" in text else text
    return tables


# ------------------------------------------------------------------------------- markdown


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def show(sc: Score | None) -> str:
    if sc is None or sc.mean is None:
        return "–"
    return pct(sc.mean) if sc.std is None else f"{sc.mean:.1f} ({sc.std:.1f})"


def table(header: list[str], rows: list[list[str]]) -> str:
    def escape(cell: str) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class Markdown:
    """The report as Markdown: one method per section."""

    def __init__(
        self, summaries: list[Summary], standings: list[Standing], agreements: dict[str, str] | None = None
    ) -> None:
        self.summaries = summaries
        self.standings = standings
        self.agreements = agreements or {}
        self.judges = len({s.judge for s in summaries}) > 1
        self.head = ["Model", "Scaffold"] + (["Judge"] if self.judges else [])
        self.benchmarks = list(dict.fromkeys(s.benchmark for s in summaries))

    def system(self, s: Summary | Standing) -> list[str]:
        return [s.model, s.scaffold] + ([s.judge or "(none)"] if self.judges else [])

    def of(self, benchmark: str) -> list[Summary]:
        return [s for s in self.summaries if s.benchmark == benchmark]

    def render(self, title: str) -> str:
        parts = [
            f"# {title}\n",
            "Scores are percent of full marks: mean over runs (sample std over run means).",
            "Ungraded attempts are left out of every mean and counted under Quality.\n",
            *self.agreement(),
            "## Table 1: score per benchmark\n",
            table(
                self.head + self.benchmarks,
                [self.system(st) + [show(st.scores.get(b)) for b in self.benchmarks] for st in self.standings],
            ),
            *self.breakdowns(),
            "## Table 2: scaffolds (tokens and cost per problem and run)\n",
            "Output tokens (reasoning included) of every call an attempt made (policy, summarizer, verifier), "
            "as the paper counts them; `Output tokens vs direct` divides them by the single-turn run's. "
            "Input + output tokens add every call's prompt. A recipe's `token_budget` counts input + output "
            "tokens (`budget_counts: total`) or output tokens only (`budget_counts: output`).\n",
            *self.scaffolds(),
            "## Quality\n",
            self.quality(),
        ]
        if len(self.standings) > 1:
            parts += ["## Leaderboard\n", self.leaderboard()]
        parts += ["## Per problem (mean score over graded runs, %)\n", *self.per_problem()]
        return "\n".join(parts)

    def agreement(self) -> list[str]:
        """Grader meta-evaluation: each judge against the human grades, per run directory."""
        if not self.agreements:
            return []
        parts = [
            "## Grader agreement with human grades\n",
            "Judge points against human points on the same attempts: problem-normalised advantage error "
            "(QED-Nano appendix A), MAE, RMSE, share within one point, exact matches, Kendall tau, "
            "bias (judge - human) and the share the judge left ungraded.\n",
        ]
        for heading, text in self.agreements.items():
            parts += ([f"### {heading}\n"] if len(self.agreements) > 1 else []) + [text]
        return parts

    def breakdowns(self) -> list[str]:
        parts = []
        for benchmark in self.benchmarks:
            for kind in ("subsets", "categories"):
                names = sorted({k for s in self.of(benchmark) for k in getattr(s, kind)})
                if len(names) > 1:
                    rows = [self.system(s) + [show(getattr(s, kind).get(n)) for n in names] for s in self.of(benchmark)]
                    parts += [f"### {benchmark}: {kind}\n", table(self.head + names, rows)]
        return parts

    def scaffolds(self) -> list[str]:
        cols = [
            "Avg. grade (%)",
            "Avg. output tokens",
            "Output tokens vs direct",
            "Avg. input + output tokens",
            "Avg. cost",
            "Total cost",
        ]
        parts = []
        for benchmark in self.benchmarks:
            rows = [
                [
                    *self.system(s),
                    show(s.score),
                    f"{s.output_tokens:,.0f}",
                    "–" if s.tokens_vs_direct is None else f"{s.tokens_vs_direct:.2f}",
                    f"{s.total_tokens:,.0f}",
                    f"${s.cost:.4f}",
                    f"${s.total_cost:.2f}",
                ]
                for s in self.of(benchmark)
            ]
            parts += [f"### {benchmark}\n", table(self.head + cols, rows)]
        return parts

    def quality(self) -> str:
        cols = [
            "Runs",
            "Problems",
            "Attempts",
            "Missing",
            "Ungraded",
            "Not graded yet",
            "Flagged",
            "Flags",
            "Truncated",
            "Faults",
            "Retries",
            "Failed calls",
        ]
        rows = [
            [
                s.benchmark,
                *self.system(s),
                str(s.runs),
                str(s.problems),
                str(s.attempts),
                "–" if s.missing is None else str(s.missing),
                str(s.ungraded),
                str(s.pending),
                str(s.flagged),
                ", ".join(f"{k}: {v}" for k, v in s.flags.items()) or "–",
                f"{100 * s.truncation_rate:.1f}%",
                *(str(s.calls[k]) if k in s.calls else "–" for k in ("faults", "retries", "failed")),
                f"${s.judge_cost:.2f}",
            ]
            for s in self.summaries
        ]
        return table(["Benchmark", *self.head, *cols, "Judge cost"], rows)

    def leaderboard(self) -> str:
        rows = [
            [
                "–" if st.rank is None else str(st.rank),
                *self.system(st),
                pct(st.average),
                *(show(st.scores.get(b)) for b in self.benchmarks),
            ]
            for st in self.standings
        ]
        return table(["Rank", *self.head, "Average", *self.benchmarks], rows)

    def per_problem(self) -> list[str]:
        parts = []
        for benchmark in self.benchmarks:
            group = self.of(benchmark)
            found = {(i, r.problem_id): r for i, s in enumerate(group) for r in s.per_problem}
            ids = list(dict.fromkeys(pid for _, pid in found))
            header = ["Problem", "Subset"] + [s.label + (f" [{s.judge}]" if self.judges else "") for s in group]
            rows = []
            for pid in ids:
                cells = [found.get((i, pid)) for i in range(len(group))]
                subset = next((r.subset for r in cells if r), "")
                rows.append([pid, subset, *(problem_cell(r) for r in cells)])
            parts += [f"### {benchmark}\n", table(header, rows)]
        return parts


def problem_cell(row: ProblemRow | None) -> str:
    if row is None:
        return "–"
    notes = ([f"{row.ungraded} ungraded"] if row.ungraded else []) + row.flags
    return pct(row.mean) + (f" ({', '.join(notes)})" if notes else "")
