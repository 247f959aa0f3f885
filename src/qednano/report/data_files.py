"""The report's machine-readable files: `report.csv`, `report-problems.csv` and `report.json`.

`build.write_report()` writes them beside `report.md` from the same numbers (`scores.py`):
one CSV row per (benchmark, model, scaffold, judge) summary, one per problem of each, and
the whole summary, leaderboard and grader agreement as JSON.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from typing import Any

from qednano.report.scores import RunAgreement, Standing, Summary


def summary_csv(summaries: list[Summary]) -> str:
    subsets = sorted({k for s in summaries for k in s.subsets})
    fields = ["benchmark", "model", "scaffold", "judge", "runs", "problems", "attempts", "missing", "mean", "std"]
    fields += ["run_means"] + [f"subset:{k}" for k in subsets] + [f"subset_std:{k}" for k in subsets]
    fields += ["ungraded", "pending", "flagged", "flags", "truncated", "truncation_rate", "output_tokens"]
    fields += ["total_tokens", "tokens_vs_direct", "cost", "total_cost", "judge_cost", "faults", "retries"]
    fields += ["failed_calls", "path"]
    rows = []
    for s in summaries:
        row: dict[str, Any] = {k: getattr(s, k) for k in fields if hasattr(s, k) and k not in ("flags",)}
        row |= {"mean": s.score.mean, "std": s.score.std, "flags": json.dumps(s.flags)}
        row |= {
            "faults": s.calls.get("faults"),
            "retries": s.calls.get("retries"),
            "failed_calls": s.calls.get("failed"),
        }
        row["run_means"] = json.dumps({str(k): round(v, 6) for k, v in s.score.runs.items()})
        for k in subsets:
            row[f"subset:{k}"] = s.subsets[k].mean if k in s.subsets else None
            row[f"subset_std:{k}"] = s.subsets[k].std if k in s.subsets else None
        rows.append(row)
    return to_csv(fields, rows)


def problems_csv(summaries: list[Summary]) -> str:
    fields = ["benchmark", "model", "scaffold", "judge", "problem_id", "subset", "category", "mean", "points"]
    fields += ["max_points", "ungraded", "flags", "truncated", "output_tokens"]
    rows = []
    for s in summaries:
        for r in s.per_problem:
            row = {"benchmark": s.benchmark, "model": s.model, "scaffold": s.scaffold, "judge": s.judge} | asdict(r)
            row |= {"points": json.dumps({str(k): v for k, v in r.points.items()}), "flags": ";".join(r.flags)}
            rows.append(row)
    return to_csv(fields, rows)


def to_csv(fields: list[str], rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def as_json(summaries: list[Summary], standings: list[Standing], title: str) -> dict[str, Any]:
    return {
        "title": title,
        "summaries": [asdict(s) for s in summaries],
        "leaderboard": [asdict(st) for st in standings],
    }


def agreement_json(computed: list[RunAgreement]) -> list[dict[str, Any]]:
    """The agreement results as JSON (NaN, a metric with too few rows, as null)."""
    return [
        {
            "path": str(r.path),
            "benchmark": r.benchmark,
            "judges": [
                {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(a).items()}
                for a in r.results
            ],
        }
        for r in computed
    ]
