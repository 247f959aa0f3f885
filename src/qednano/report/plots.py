"""The report's figure: score against cost per problem, one panel per benchmark (QED-Nano Figure 1).

`build.write_report()` draws it from the run summaries of `scores.py` into
`cost_vs_score.png`; matplotlib is optional (`qednano[eval]`), and without it the report
goes on without the figure. Scores are percent of full marks, on a 0-100 axis. A benchmark
with no score yet (nothing graded) still gets its panel: the tokens per problem of each
system as bars, and the reason there is no score (no judge ran, grades pending, no verdict).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qednano.report.scores import Summary

log = logging.getLogger(__name__)


def no_score_reason(s: Summary) -> str:
    """Why a summary has no score, in a few words."""
    if not s.judge:
        return "no judge has graded it"
    parts = ([f"{s.pending} not graded yet"] if s.pending else []) + (
        [f"{s.ungraded} without a verdict"] if s.ungraded else []
    )
    return ", ".join(parts) or "no attempts"


def plot_cost_vs_score(summaries: list[Summary], path: Path) -> Path | None:
    """Score against cost per problem (tokens when nothing has a price), one panel per benchmark."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no %s (pip install 'qednano[eval]')", path.name)
        return None
    fig = figure(summaries)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def figure(summaries: list[Summary]) -> Any:
    """The matplotlib figure of `plot_cost_vs_score` (matplotlib must be installed)."""
    import matplotlib.pyplot as plt

    benchmarks = list(dict.fromkeys(s.benchmark for s in summaries))
    models = list(dict.fromkeys(s.model for s in summaries))
    by_cost = any(s.cost > 0 for s in summaries)

    def x_of(s: Summary) -> float:
        return s.cost if by_cost else s.output_tokens

    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.5 * len(benchmarks), 4.2), squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks, strict=True):
        group = [s for s in summaries if s.benchmark == benchmark]
        shown = [s for s in group if s.score.mean is not None]
        if not shown:
            tokens_only(ax, group)
            continue
        for i, model in enumerate(models):
            # one colour per model; its scaffolds joined from cheapest to dearest, as in the paper's Figure 1
            points = sorted((s for s in shown if s.model == model), key=x_of)
            if not points:
                continue
            color = f"C{i % 10}"
            ax.plot([x_of(s) for s in points], [s.score.mean for s in points], "-", color=color, alpha=0.4)
            for s in points:
                ax.errorbar([x_of(s)], [s.score.mean], yerr=[s.score.std or 0.0], fmt="o", capsize=3, color=color)
                ax.annotate(s.scaffold, (x_of(s), s.score.mean), textcoords="offset points", xytext=(5, 5), fontsize=8)
            ax.plot([], [], "o", color=color, label=model)
        if all(x_of(s) > 0 for s in shown):
            ax.set_xscale("log")
        ax.set_ylim(-3, 103)
        ax.set_title(benchmark)
        ax.set_xlabel("cost per problem (USD)" if by_cost else "output tokens per problem")
        ax.set_ylabel("score (% of full marks)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        unscored = [s for s in group if s.score.mean is None]
        if unscored:
            note = "no score: " + "; ".join(f"{s.label} ({no_score_reason(s)})" for s in unscored)
            ax.text(0.01, 0.01, note, transform=ax.transAxes, fontsize=7, color="0.35", va="bottom", wrap=True)
    fig.tight_layout()
    return fig


def tokens_only(ax: Any, group: list[Summary]) -> None:
    """A benchmark with nothing graded: output tokens per problem of each system, and why there is no score."""
    labels = [s.label + (f" [{s.judge}]" if s.judge else "") for s in group]
    ax.barh(range(len(group)), [s.output_tokens for s in group], color="C0", alpha=0.7)
    ax.set_yticks(range(len(group)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_title(f"{group[0].benchmark}: no score yet")
    ax.set_xlabel("output tokens per problem")
    ax.grid(True, axis="x", alpha=0.3)
    reasons = sorted({no_score_reason(s) for s in group})
    ax.text(0.98, 0.02, "no score: " + "; ".join(reasons), transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
