"""The static HTML viewer of the EVAL flow's report stage: one self-contained `report.html`.

Runs -> problems -> attempts -> the full transcript (every call: step, messages, reasoning,
text, tokens) -> the judge's explanation and points, with filters by score, flag and
subset. The file works offline: KaTeX (JS, CSS, woff2 fonts as data URIs) and the viewer's
own scripts (`viewer_assets/`: `markdown.js` shows texts as Markdown with math, `viewer.js`
the pages) are inlined. Model text is data, never markup: the records go in as JSON inside a
`<script type="application/json">` with `<`, `>` and `&` escaped, the scripts build every node
with `textContent`, and a Content-Security-Policy allows only the page's own scripts (by hash),
so neither a `<script>` nor an `onerror=` in a proof can run.

The JSON stores each text once: proofs, call texts, reasoning, message contents and judge
explanations are indices into one `texts` list (a proof is also its last call's text, and
RSA's prompts repeat the candidates), and each run directory's attempts are stored once
(`runs`), shared by the cells of its judges, each of which adds only its grades.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import asdict
from functools import cache
from pathlib import Path
from typing import Any

from qednano.records import Attempt, Completion, Grade
from qednano.report.scores import CellRecords, Summary

ASSETS = Path(__file__).with_name("viewer_assets")
MAX_CHARS = 200_000
"""Longest text kept per field; longer texts are cut in the middle with a visible marker."""


def render_html(cells: list[CellRecords], summaries: list[Summary], title: str, max_chars: int = MAX_CHARS) -> str:
    data = viewer_data(cells, summaries, title, max_chars)
    scripts = [asset("katex.min.js"), asset("markdown.js"), asset("viewer.js")]
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in scripts)
    policy = f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; font-src data:; img-src data:"
    body_scripts = "\n".join(f"<script>{s}</script>" for s in scripts)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<title>{html.escape(title)}</title>
<style>{katex_css()}</style>
<style>{asset("viewer.css")}</style>
</head>
<body>
<header><h1 id="title">{html.escape(title)}</h1></header>
<main id="app"><p>Loading the report (needs JavaScript).</p></main>
<script type="application/json" id="qednano-data">{embed_json(data)}</script>
{body_scripts}
</body>
</html>
"""


def embed_json(data: Any) -> str:
    """JSON safe inside a `<script>` element: no `</script>`, `<!--` or line separators can appear."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text


def clip(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    return f"{text[:half]}\n\n[... {len(text) - 2 * half:,} characters cut by the viewer ...]\n\n{text[-half:]}"


class Texts:
    """The page's text table: each distinct text stored once, referred to by its index."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.items: list[str] = []
        self.index: dict[str, int] = {}

    def ref(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.items)
            self.items.append(clip(text, self.max_chars))
        return found


def completion_data(c: Completion, texts: Texts) -> dict[str, Any]:
    data = c.model_dump(mode="json")
    data["text"] = texts.ref(c.text)
    data["reasoning"] = texts.ref(c.reasoning)
    data["messages"] = [
        {**m, "content": texts.ref(m["content"])} if isinstance(m.get("content"), str) else m for m in c.messages
    ]
    return data


def attempt_data(a: Attempt, texts: Texts) -> dict[str, Any]:
    return {
        "id": a.id,
        "problem_id": a.problem_id,
        "sample": a.sample,
        "proof": texts.ref(a.proof),
        "truncated": a.truncated,
        "input_tokens": a.input_tokens,
        "output_tokens": a.output_tokens,
        "cost": a.cost,
        "human_points": a.human_points,
        "transcript": [completion_data(c, texts) for c in a.transcript],
    }


def grade_data(g: Grade, texts: Texts) -> dict[str, Any]:
    return {
        "judge": g.judge,
        "points": g.points,
        "max_points": g.max_points,
        "explanation": texts.ref(g.explanation),
        "flags": g.flags,
        "transcript": [completion_data(c, texts) for c in g.transcript],
    }


def viewer_data(cells: list[CellRecords], summaries: list[Summary], title: str, max_chars: int) -> dict[str, Any]:
    problems: dict[str, dict[str, Any]] = {}
    texts = Texts(max_chars)
    runs: dict[Path, int] = {}
    run_attempts: list[list[dict[str, Any]]] = []
    out_cells = []
    for cell, summary in zip(cells, summaries, strict=True):
        bench = problems.setdefault(cell.benchmark, {})
        for p in cell.problems.values():
            bench.setdefault(
                p.id,
                {
                    "id": p.id,
                    "statement": clip(p.statement, max_chars),
                    "solution": clip(p.solution, max_chars),
                    "rubric": clip(p.rubric, max_chars),
                    "answer": p.answer,
                    "max_points": p.max_points,
                    "subset": str(p.metadata.get("subset", "")),
                    "category": str(p.metadata.get("category", "")),
                },
            )
        attempts = sorted(cell.attempts, key=lambda a: (a.problem_id, a.sample))
        if cell.path not in runs:
            runs[cell.path] = len(run_attempts)
            run_attempts.append([attempt_data(a, texts) for a in attempts])
        out_cells.append(
            {
                "benchmark": cell.benchmark,
                "model": cell.model,
                "scaffold": cell.scaffold,
                "judge": cell.judge,
                "score": asdict(summary.score),
                "runs": summary.runs,
                "ungraded": summary.ungraded,
                "pending": summary.pending,
                "flagged": summary.flagged,
                "truncation_rate": summary.truncation_rate,
                "output_tokens": summary.output_tokens,
                "cost": summary.cost,
                "run": runs[cell.path],
                "grades": {a.id: grade_data(cell.grades[a.id], texts) for a in attempts if a.id in cell.grades},
            }
        )
    return {"title": title, "problems": problems, "texts": texts.items, "runs": run_attempts, "cells": out_cells}


def asset(name: str) -> str:
    text = (ASSETS / name).read_text(encoding="utf-8")
    if name.endswith(".js"):
        text = text.replace("</script", "<\\/script")  # cannot end the inline element early
    return text


@cache
def katex_css() -> str:
    """KaTeX's CSS with each woff2 font inlined as a data URI."""

    def inline(match: re.Match[str]) -> str:
        font = (ASSETS / "fonts" / match.group(1)).read_bytes()
        return f"url(data:font/woff2;base64,{base64.b64encode(font).decode()})"

    return re.sub(r"url\(fonts/([A-Za-z0-9_-]+\.woff2)\)", inline, asset("katex.min.css"))
