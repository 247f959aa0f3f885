"""Decontamination: reworded, renumbered and reformatted benchmark problems are caught; a same-topic problem is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from qednano.benchmarks.sources import IMOProofBench
from qednano.data.decontaminate import Decontamination, Embeddings, YearRange, decontaminate, in_years, normalise
from qednano.records import Problem

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def bench() -> dict[str, list[Problem]]:
    return {"imo-proofbench": IMOProofBench(path=str(FIXTURES / "benchmarks/proofbench.csv")).load()}


def by_id(problems: list[Problem], pid: str) -> Problem:
    return next(p for p in problems if p.id == pid)


def test_normalise_removes_formatting_numbering_and_delimiters() -> None:
    a = r"Let $ABC$ be a triangle. Prove that $\dfrac{a}{b}\le 1$."
    b = "Problem 3.  Let \\(ABC\\)  be a triangle.\nProve that \\[\\frac{a}{b} \\, \\leq 1\\]."
    assert normalise(a) == normalise(b)
    assert normalise("(b) Show that $x>0$.") == normalise("2. Show that x > 0.")


def test_a_reworded_renumbered_reformatted_benchmark_problem_is_caught(bench: dict[str, list[Problem]]) -> None:
    original = by_id(bench["imo-proofbench"], "PB-Advanced-002").statement
    assert original.startswith("Prove that among any $5$ points in a unit square")
    variants = [
        Problem(id="reformatted", statement=original.replace("$", "\\(", 1).replace("$", "\\)", 1).replace(" ", "  ")),
        Problem(id="renumbered", statement="Problem 7. " + original),
        Problem(
            id="reworded",
            statement="Problem 2: Show that if five points lie in a unit square, then two of them are at distance "
            "at most \\(\\dfrac{\\sqrt{2}}{2}\\).",
        ),
        Problem(id="exact", statement=original),
    ]
    kept, dropped, report = decontaminate(variants, bench, Decontamination())
    assert kept == [] and {p.id for p, _ in dropped} == {"reformatted", "renumbered", "reworded", "exact"}
    kinds = {m.train_id: m.kind for m in report.matches}
    assert kinds["exact"] == "exact" and kinds["reformatted"] == "normalised" and kinds["renumbered"] == "normalised"
    assert kinds["reworded"] in ("fuzzy", "ngram")
    assert all("PB-Advanced-002" in reason for _, reason in dropped)


def test_a_problem_sharing_the_topic_is_not_flagged(bench: dict[str, list[Problem]]) -> None:
    same_topic = [
        Problem(
            id="points",
            statement="Prove that among any $10$ points in a unit cube, two are at distance at most $\\frac{\\sqrt{3}}{2}$ from each other after a rotation of the cube.",
        ),
        Problem(
            id="incenter",
            statement="Let $ABC$ be a triangle with incenter $I$ and circumcenter $O$. Prove that $OI^2 = R^2 - 2Rr$.",
        ),
        Problem(id="even", statement="Prove that $n^3 - n$ is divisible by $6$ for every integer $n$."),
    ]
    kept, dropped, report = decontaminate(same_topic, bench, Decontamination())
    assert dropped == [] and [p.id for p in kept] == ["points", "incenter", "even"]
    assert all(not m.contaminated for m in report.matches)


def test_contamination_report_counts_at_each_threshold_with_pairs_side_by_side(bench: dict[str, list[Problem]]) -> None:
    original = by_id(bench["imo-proofbench"], "PB-Advanced-001").statement
    problems = [Problem(id="copy", statement="1. " + original), Problem(id="other", statement="Prove that 1 + 1 = 2.")]
    _, _, report = decontaminate(problems, bench, Decontamination())
    counts = report.counts("imo-proofbench")
    assert counts["benchmark_problems"] == 4 and counts["normalised"] == 1 and counts["contaminated"] == 1
    assert counts["fuzzy"][">=95"] == 1 and counts["ngram"][">=0.9"] == 1
    md = report.markdown()
    assert "## imo-proofbench (4 problems)" in md and "| normalised | 100 | 1.00 | `copy`" in md
    assert "`PB-Advanced-001` Let $ABC$ be a triangle with incenter" in md
    assert report.as_json()["benchmarks"]["imo-proofbench"]["contaminated"] == 1


def test_year_range_excludes_2025_by_default_and_keeps_unknown_years() -> None:
    years = YearRange()
    assert in_years(Problem(id="a", statement="x", metadata={"year": 2025}), years) == "year 2025 > 2024"
    assert in_years(Problem(id="b", statement="x", metadata={"year": 2024}), years) is None
    assert in_years(Problem(id="c", statement="x"), years) is None
    assert in_years(Problem(id="c", statement="x"), YearRange(drop_unknown_year=True)) == "unknown year"


def test_embeddings_are_skipped_cleanly_without_sentence_transformers(bench: dict[str, list[Problem]]) -> None:
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("sentence-transformers is installed: the skip path is not reachable here")
    config = Decontamination(embeddings=Embeddings(model_path="/nonexistent/model"))
    kept, _, report = decontaminate([Problem(id="x", statement="Prove that 2 is prime.")], bench, config)
    assert len(kept) == 1 and "sentence-transformers is not installed" in report.notes[0]
