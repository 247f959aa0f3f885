"""The report's figure: score against cost per problem, one panel per benchmark (QED-Nano Figure 1).

`build.write_report()` draws it from the run summaries of `scores.py` into
`cost_vs_score.png`; matplotlib is optional (`qednano[eval]`), and without it the report
goes on without the figure.
"""

from __future__ import annotations

import logging
from pathlib import Path

from qednano.report.scores import Summary

log = logging.getLogger(__name__)


def plot_cost_vs_score(summaries: list[Summary], path: Path) -> Path | None:
    """Score against cost per problem (tokens when nothing has a price), one panel per benchmark."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no %s (pip install 'qednano[eval]')", path.name)
        return None
    benchmarks = list(dict.fromkeys(s.benchmark for s in summaries))
    models = list(dict.fromkeys(s.model for s in summaries))
    by_cost = any(s.cost > 0 for s in summaries)

    def x_of(s: Summary) -> float:
        return s.cost if by_cost else s.output_tokens

    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5.5 * len(benchmarks), 4.2), squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks, strict=True):
        shown = [s for s in summaries if s.benchmark == benchmark and s.score.mean is not None]
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
        if shown and all(x_of(s) > 0 for s in shown):
            ax.set_xscale("log")
        ax.set_title(benchmark)
        ax.set_xlabel("cost per problem (USD)" if by_cost else "output tokens per problem")
        ax.set_ylabel("score (% of full marks)")
        ax.grid(True, alpha=0.3)
        if shown:
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(0.5, 0.5, "no graded attempts yet", ha="center", va="center", transform=ax.transAxes, color="0.4")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
