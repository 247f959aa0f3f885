"""Report statistics against hand-computed values, and the report files (md, csv, json, png) from run directories."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from qednano import cli
from qednano.grading.agreement import agreement, agreement_table
from qednano.records import Attempt, Completion, Grade, Problem
from qednano.report.build import REPORT_FILES, load_cells, write_report
from qednano.report.scores import CellRecords, leaderboard, relate_to_direct, score, summarize
from qednano.store import RunDir

PROBLEMS = {
    "A": Problem(id="A", statement="Prove $a$.", metadata={"subset": "Basic", "category": "Algebra"}),
    "B": Problem(id="B", statement="Prove $b$.", metadata={"subset": "Advanced", "category": "Algebra"}),
    "C": Problem(id="C", statement="Prove $c$.", metadata={"subset": "Basic", "category": "Geometry"}),
}


def attempt(pid: str, sample: int, out_tokens: int, cost: float = 0.0, truncated: bool = False) -> Attempt:
    call = Completion(
        step="solve",
        model="m",
        messages=[{"role": "user", "content": "p"}],
        text="proof",
        input_tokens=10,
        output_tokens=out_tokens,
        cost=cost,
        truncated=truncated,
        finish_reason="length" if truncated else "stop",
    )
    return Attempt(
        id=f"{pid}/{sample}", problem_id=pid, sample=sample, scaffold="direct", proof="proof", transcript=[call]
    )


def grade(a: Attempt, points: float | None, flags: list[str] | None = None, judge: str = "j") -> Grade:
    return Grade(attempt_id=a.id, problem_id=a.problem_id, judge=judge, points=points, flags=flags or [])


def example_cell(scaffold: str = "direct", tokens: int = 100, model: str = "m") -> CellRecords:
    """3 runs; run 0: A=7 B=0; run 1: A=7 B=7; run 2: A ungraded, B=0; C has one attempt with no grade yet."""
    attempts = [
        attempt("A", 0, tokens, cost=0.01),
        attempt("B", 0, tokens, cost=0.01),
        attempt("A", 1, tokens, cost=0.01),
        attempt("B", 1, tokens, cost=0.01),
        attempt("A", 2, tokens, cost=0.01, truncated=True),
        attempt("B", 2, tokens, cost=0.01),
        attempt("C", 0, tokens, cost=0.01),
    ]
    points = [7, 0, 7, 7, None, 0]
    flags = [[], [], [], ["prompt_injection"], ["no_verdict"], []]
    grades = {a.id: grade(a, p, f) for a, p, f in zip(attempts, points, flags, strict=False)}
    return CellRecords(Path("runs/x"), "bench", model, scaffold, "j", PROBLEMS, attempts, grades, samples=3)


def test_score_is_the_mean_and_sample_std_of_run_means() -> None:
    sc = score([(0, 1.0), (0, 0.0), (1, 1.0), (1, 1.0), (2, None), (2, 0.0)])
    assert sc.runs == {0: 50.0, 1: 100.0, 2: 0.0}
    assert sc.mean == pytest.approx(50.0)
    assert sc.std == pytest.approx(50.0)  # stdev([50, 100, 0]) with ddof=1
    assert (sc.graded, sc.ungraded) == (5, 1)
    single = score([(0, 0.5), (0, None)])
    assert (single.mean, single.std, single.ungraded) == (50.0, None, 1)
    nothing = score([(0, None)])
    assert (nothing.mean, nothing.std, nothing.graded) == (None, None, 0)


def test_summary_of_a_cell() -> None:
    s = summarize(example_cell())
    assert s.score.mean == pytest.approx(50.0) and s.score.std == pytest.approx(50.0)
    assert s.score.ungraded == 2  # A/2 (points None) and C/0 (no grade yet): never zeros
    assert (s.ungraded, s.pending, s.flagged) == (1, 1, 2)
    assert s.flags == {"no_verdict": 1, "prompt_injection": 1}
    # Basic = A only (C has no grade): run means 100, 100 -> 100 (0); Advanced = B: 0, 100, 0
    assert s.subsets["Basic"].mean == pytest.approx(100.0) and s.subsets["Basic"].std == pytest.approx(0.0)
    assert s.subsets["Advanced"].mean == pytest.approx(100 / 3)
    assert s.subsets["Advanced"].std == pytest.approx(57.735027, rel=1e-6)
    assert s.categories["Geometry"].mean is None and s.categories["Geometry"].ungraded == 1
    assert (s.runs, s.problems, s.attempts, s.missing) == (3, 3, 7, 2)  # 3 problems x 3 samples - 7
    assert s.truncated == 1 and s.truncation_rate == pytest.approx(1 / 7)
    assert s.output_tokens == 100 and s.total_tokens == 110
    assert s.cost == pytest.approx(0.01) and s.total_cost == pytest.approx(0.07)
    rows = {r.problem_id: r for r in s.per_problem}
    assert rows["A"].points == {0: 7, 1: 7, 2: None} and rows["A"].mean == 100.0 and rows["A"].ungraded == 1
    assert rows["B"].mean == pytest.approx(100 / 3) and rows["B"].flags == ["prompt_injection"]
    assert rows["C"].mean is None and rows["C"].points == {0: None}


def test_tokens_relative_to_direct_and_leaderboard() -> None:
    summaries = [
        summarize(example_cell("direct", 100)),
        summarize(example_cell("rsa", 2000)),
        summarize(example_cell("direct", 50, model="small")),
    ]
    summaries[2].score.mean = 10.0
    relate_to_direct(summaries)
    assert [s.tokens_vs_direct for s in summaries] == [1.0, 20.0, 1.0]
    board = leaderboard(summaries)
    assert [(st.rank, st.model, st.scaffold) for st in board] == [
        (1, "m", "direct"),
        (2, "m", "rsa"),
        (3, "small", "direct"),
    ]
    assert board[0].average == pytest.approx(50.0)


def write_run(root: Path, model: str, scaffold: str, cell: CellRecords) -> Path:
    """A run directory as `qednano generate` + `grade` leave it."""
    store = RunDir(root / model / scaffold)
    store.pin(
        {
            "benchmark": "bench",
            "problems": {"source": "file", "path": "problems.jsonl"},
            "models": {"policy": {"name": model, "model": f"org/{model}"}},
            "scaffold": {"name": scaffold},
            "samples": 3,
        }
    )
    (store.path / "problems.jsonl").write_text("".join(p.model_dump_json() + "\n" for p in PROBLEMS.values()))
    for a in cell.attempts:
        store.append("attempts.jsonl", a)
    for g in cell.grades.values():
        store.append("grades/j.jsonl", g)
    return store.path


def test_report_files_from_run_directories(tmp_path: Path) -> None:
    write_run(tmp_path / "eval", "m", "direct", example_cell())
    write_run(tmp_path / "eval", "m", "rsa", example_cell("rsa", 300))
    cells = load_cells([tmp_path / "eval"])
    assert [(c.model, c.scaffold, c.judge, len(c.attempts), c.samples) for c in cells] == [
        ("m", "direct", "j", 7, 3),
        ("m", "rsa", "j", 7, 3),
    ]
    written = write_report(cells, tmp_path / "out", "Test report")
    assert sorted(p.name for p in written) == sorted(REPORT_FILES)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| m | direct | 50.0 (50.0) |" in md
    assert "### bench: subsets" in md and "| m | direct | 33.3 (57.7) | 100.0 (0.0) |" in md
    assert "| m | rsa | 50.0 (50.0) | 300 | 3.00 | 310 | $0.0100 | $0.07 |" in md
    assert "| bench | m | direct | 3 | 3 | 7 | 2 | 1 | 1 | 2 | no_verdict: 1, prompt_injection: 1 | 14.3% |" in md
    assert (
        "## Leaderboard" in md
        and "| A | Basic | 100.0 (1 ungraded, no_verdict) | 100.0 (1 ungraded, no_verdict) |" in md
    )
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "report.csv").read_text())))
    assert float(rows[0]["mean"]) == pytest.approx(50.0) and float(rows[0]["std"]) == pytest.approx(50.0)
    assert json.loads(rows[0]["run_means"]) == {"0": 50.0, "1": 100.0, "2": 0.0}
    assert float(rows[1]["tokens_vs_direct"]) == pytest.approx(3.0) and rows[0]["missing"] == "2"
    problems = list(csv.DictReader(io.StringIO((tmp_path / "out" / "report-problems.csv").read_text())))
    assert len(problems) == 6 and problems[0]["problem_id"] == "A" and problems[0]["subset"] == "Basic"
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["summaries"][0]["score"]["mean"] == pytest.approx(50.0)
    assert data["summaries"][0]["ungraded"] == 1 and data["summaries"][0]["pending"] == 1
    assert [st["scaffold"] for st in data["leaderboard"]] == ["direct", "rsa"]
    png = (tmp_path / "out" / "cost_vs_score.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_report_command(tmp_path: Path) -> None:
    one = write_run(tmp_path / "a", "m", "direct", example_cell())
    two = write_run(tmp_path / "b", "other", "direct", example_cell(model="other"))
    assert cli.main(["report", str(one)]) == 0
    assert all((one / name).is_file() for name in REPORT_FILES)
    out = tmp_path / "board"
    assert cli.main(["report", str(tmp_path / "a"), str(two), "--out", str(out), "--title", "Board"]) == 0
    md = (out / "report.md").read_text()
    assert md.startswith("# Board") and "## Leaderboard" in md and "| other | direct |" in md
    assert cli.main(["report", str(tmp_path / "missing")]) == 2


# ------------------------------------------------------------------------- grader meta-evaluation


def human_cell() -> CellRecords:
    """The example cell's attempts with human points: the judge's grades are compared with them."""
    human = {"A/0": 7, "B/0": 1, "A/1": 5, "B/1": 7, "A/2": 6, "B/2": 0, "C/0": 3}
    cell = example_cell()
    cell.attempts = [a.model_copy(update={"human_points": float(human[a.id])}) for a in cell.attempts]
    return cell


def test_report_shows_judge_agreement_when_attempts_carry_human_points(tmp_path: Path) -> None:
    cell = human_cell()
    run = write_run(tmp_path / "meta", "m", "direct", cell)
    write_report(load_cells([run]), run)
    md = (run / "report.md").read_text()
    expected = agreement_table(agreement(cell.attempts, list(cell.grades.values())))
    assert "## Grader agreement with human grades" in md and expected in md
    # Scored pairs (judge, human): A 7/7, 7/5; B 0/1, 7/7, 0/0 (A/2 ungraded, C/0 not graded). Advantages:
    # A judge 0,0 vs human 1,-1; B judge -7/3,14/3,-7/3 vs human -5/3,13/3,-8/3: error (1+1+2/3+1/3+1/3)/5.
    assert "| j |  | 5 | 0.667 | 0.600 | 1.000 | 80.0% | 60.0% |" in md
    [found] = json.loads((run / "report.json").read_text())["agreement"]
    assert found["judges"][0]["mae"] == pytest.approx(0.6) and found["judges"][0]["ungraded_rate"] == pytest.approx(
        1 / 6
    )
    plain = write_run(tmp_path / "plain", "m", "direct", example_cell())
    write_report(load_cells([plain]), plain)
    assert "Grader agreement" not in (plain / "report.md").read_text()
    assert json.loads((plain / "report.json").read_text())["agreement"] == []


def test_report_takes_agreement_md_when_the_run_has_no_grades(tmp_path: Path) -> None:
    cell = human_cell()
    cell.grades = {}
    run = write_run(tmp_path / "meta", "m", "direct", cell)
    (run / "agreement.md").write_text(
        "# Grader agreement with human grades\n\n| judge | n |\n|---|---:|\n| old | 7 |\n"
    )
    assert cli.main(["report", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "## Grader agreement with human grades" in md and "| judge | n |\n|---|---:|\n| old | 7 |" in md


def unscored_cell(model: str = "u", judge: str = "j") -> CellRecords:
    """A cell whose attempts have no grade yet (pending): it has tokens but no score."""
    attempts = [attempt("A", 0, 400), attempt("B", 0, 600)]
    return CellRecords(Path("runs/u"), "bench", model, "direct", judge, PROBLEMS, attempts, {}, samples=1)


def test_leaderboard_does_not_rank_systems_without_a_score() -> None:
    summaries = [summarize(unscored_cell()), summarize(example_cell()), summarize(example_cell("rsa"))]
    board = leaderboard(summaries)
    assert [(st.rank, st.model, st.scaffold) for st in board] == [
        (1, "m", "direct"),
        (2, "m", "rsa"),
        (None, "u", "direct"),
    ]
    from qednano.report.build import Markdown

    md = Markdown(summaries, board).leaderboard()
    assert "| – | u | direct | – | – |" in md and "| 1 | m | direct | 50.0 |" in md


def test_cost_plot_axes_and_a_benchmark_with_nothing_graded() -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is the eval extra's (pip install 'qednano[eval]')")
    from qednano.report.plots import figure

    fig = figure([summarize(example_cell()), summarize(unscored_cell())])
    (ax,) = fig.axes
    assert ax.get_ylim() == (-3, 103) and "%" in ax.get_ylabel()  # scores are percent on a 0-100 axis
    assert any("u / direct (2 not graded yet)" in t.get_text() for t in ax.texts)

    fig = figure([summarize(unscored_cell()), summarize(unscored_cell("v", judge=""))])
    (ax,) = fig.axes
    assert [round(p.get_width()) for p in ax.patches] == [500, 500]  # the tokens are plotted anyway
    assert "%" not in ax.get_ylabel() and ax.get_xlabel() == "output tokens per problem"
    assert "no score" in ax.get_title()
    (note,) = ax.texts
    assert note.get_text() == "no score: 2 not graded yet; no judge has graded it"
