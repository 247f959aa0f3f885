"""Benchmark loaders: official CSV layouts, hub-layout local copies (saved with `datasets`), validation, subsets."""

from __future__ import annotations

import csv
import json
import logging
import sys
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from qednano.benchmarks.sources import (
    IMOAnswerBench,
    IMOProofBench,
    MathArena,
    ProblemFile,
    ProblemSource,
    ProofBench,
    Table,
)
from qednano.config import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"
SNAKE = {
    "Problem ID": "problem_id",
    "Problem": "problem",
    "Solution": "solution",
    "Grading guidelines": "grading_guidelines",
    "Category": "category",
    "Level": "level",
    "Short Answer": "short_answer",
    "Source": "source",
    "Subcategory": "subcategory",
}


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def save_hub_copy(rows: list[dict], folder: Path, split: str = "train") -> Path:
    """A local copy of a hub dataset, as `datasets.DatasetDict.save_to_disk` writes it."""
    datasets = pytest.importorskip(
        "datasets", reason='local hub copies are read with datasets (pip install -e ".[eval]")'
    )
    datasets.DatasetDict({split: datasets.Dataset.from_list(rows)}).save_to_disk(str(folder))
    return folder


def save_data_files(rows: list[dict], folder: Path, split: str = "train") -> Path:
    """A folder of data files in the hub's layout (`data/<split>-00000-of-00001.parquet`)."""
    datasets = pytest.importorskip(
        "datasets", reason='local hub copies are read with datasets (pip install -e ".[eval]")'
    )
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_list(rows).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


# ------------------------------------------------------------------------- IMO-ProofBench


def test_imo_proofbench_official_csv() -> None:
    problems = IMOProofBench(path=str(FIXTURES / "proofbench.csv")).load()
    assert [p.id for p in problems] == ["PB-Basic-001", "PB-Basic-002", "PB-Advanced-001", "PB-Advanced-002"]
    first = problems[0]
    assert first.statement == "Prove that $n^2 + n$ is even for every integer $n$."
    assert first.rubric.startswith("(Partial)\n 1. Factored") and "(Almost)" in first.rubric
    assert first.max_points == 7 and first.answer == "" and first.source == "imo-proofbench"
    assert first.metadata == {
        "subset": "Basic",
        "category": "Number theory",
        "level": "pre-IMO",
        "short_answer": "",
        "origin": "Novel Problem",
    }
    assert problems[2].metadata["subset"] == "Advanced"
    assert '"A" is the angle' in problems[2].statement  # doubled quotes inside a quoted field


def test_imo_proofbench_hub_copies_give_the_same_problems(tmp_path: Path) -> None:
    from_csv = IMOProofBench(path=str(FIXTURES / "proofbench.csv")).load()
    rows = [{SNAKE[k]: v for k, v in row.items()} for row in csv_rows(FIXTURES / "proofbench.csv")]
    saved = save_hub_copy(rows, tmp_path / "saved")
    files = save_data_files(rows, tmp_path / "files")
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for path in (saved, files, jsonl):
        assert IMOProofBench(path=str(path)).load() == from_csv, path


def test_imo_proofbench_subsets_from_the_recipe() -> None:
    path = str(FIXTURES / "proofbench.csv")
    assert [p.id for p in IMOProofBench(path=path, subsets=["Basic"]).load()] == ["PB-Basic-001", "PB-Basic-002"]
    assert [p.id for p in IMOProofBench(path=path, categories=["Geometry"]).load()] == ["PB-Advanced-001"]
    assert [p.id for p in IMOProofBench(path=path, levels=["IMO-hard", "pre-IMO"]).load()] == [
        "PB-Basic-001",
        "PB-Advanced-002",
    ]
    assert [p.id for p in IMOProofBench(path=path, subsets=["Advanced"], limit=1).load()] == ["PB-Advanced-001"]
    assert [p.id for p in IMOProofBench(path=path, ids=["PB-Advanced-002", "PB-Basic-001"]).load()] == [
        "PB-Basic-001",
        "PB-Advanced-002",
    ]
    with pytest.raises(ConfigError, match=r"no problem has category \['Algbra'\]"):
        IMOProofBench(path=path, categories=["Algbra"]).load()
    with pytest.raises(ConfigError, match="unknown problem ids"):
        IMOProofBench(path=path, ids=["PB-Basic-999"]).load()


def test_imo_proofbench_bad_rows_name_file_line_and_field(tmp_path: Path) -> None:
    text = (FIXTURES / "proofbench.csv").read_text(encoding="utf-8")
    bad = tmp_path / "bad.csv"
    bad.write_text(text.replace("PB-Basic-002", "PB-Easy-002").replace(",Geometry,", ",Topology,"), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        IMOProofBench(path=str(bad)).load()
    message = str(err.value)
    assert "2 invalid row(s)" in message
    assert f"{bad}:6: Problem ID: expected PB-Basic-NNN or PB-Advanced-NNN, got 'PB-Easy-002'" in message
    assert f"{bad}:10: Category: expected one of" in message and "'Topology'" in message


# ------------------------------------------------------------------------ IMO-AnswerBench


def test_answerbench_repairs_the_misplaced_quote_row(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        problems = IMOAnswerBench(path=str(FIXTURES / "answerbench.csv")).load()
    assert len(problems) == 5
    fixed = problems[1]
    assert fixed.id == "imo-bench-algebra-002"
    assert fixed.statement.endswith("f(x^2) = f(x)^2\n\\]")
    assert fixed.answer == "$f(x)=x$"
    assert fixed.metadata == {
        "subset": "Algebra",
        "category": "Algebra",
        "subcategory": "Functional Equation",
        "origin": "Made-up Olympiad 2001",
    }
    assert fixed.max_points == 1
    assert f"{FIXTURES / 'answerbench.csv'}:4: repaired a misplaced quote" in caplog.text
    assert (
        problems[0].answer == "8"
        and problems[0].statement == "Find the smallest positive integer $n$ such that $n^2 > 50$."
    )
    assert problems[3].statement.endswith('in the form "$a$".')


def test_answerbench_without_repair_reports_the_row() -> None:
    with pytest.raises(ConfigError) as err:
        IMOAnswerBench(path=str(FIXTURES / "answerbench.csv"), repair=False).load()
    assert f"{FIXTURES / 'answerbench.csv'}:4: Category: expected one of" in str(err.value)
    assert "'Functional Equation'" in str(err.value)


def test_answerbench_validates_every_row() -> None:
    path = FIXTURES / "answerbench_invalid.csv"
    with pytest.raises(ConfigError) as err:
        IMOAnswerBench(path=str(path)).load()
    lines = str(err.value).splitlines()
    assert lines[0] == "3 invalid row(s):"
    assert lines[1] == f"{path}:3: Short Answer: empty answer"
    assert lines[2] == f"{path}:4: Category: 'Algebra' does not match the id 'imo-bench-geometry-001'"
    assert lines[3].startswith(f"{path}:5: Problem ID: expected imo-bench-<category>-NNN")
    assert lines[4].startswith(f"{path}:5: Category: expected one of")


def test_answerbench_hub_copy_gives_the_same_problems(tmp_path: Path) -> None:
    from_csv = IMOAnswerBench(path=str(FIXTURES / "answerbench.csv")).load()
    rows = []
    for p in from_csv:  # a mirror made from correctly parsed data, with the mirror's column names
        rows.append(
            {"problem_id": p.id, "problem": p.statement, "answer": p.answer}
            | {k: p.metadata[k] for k in ("category", "subcategory")}
            | {"source": p.metadata["origin"]}
        )
    assert IMOAnswerBench(path=str(save_hub_copy(rows, tmp_path / "saved"))).load() == from_csv
    # a mirror without a category column: the category comes from the id
    bare = [{"question_id": r["problem_id"], "problem": r["problem"], "answer": r["answer"]} for r in rows]
    loaded = IMOAnswerBench(path=str(save_data_files(bare, tmp_path / "bare"))).load()
    assert [p.metadata["category"] for p in loaded] == [p.metadata["category"] for p in from_csv]
    assert (
        IMOAnswerBench(path=str(FIXTURES / "answerbench.csv"), categories=["Number theory"]).load()[0].answer == "$p=3$"
    )


# ------------------------------------------------------------------------------ ProofBench


def test_proofbench_problems_and_expert_rated_attempts(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "proofbench_ma.jsonl").read_text().splitlines()]
    saved = save_hub_copy(rows, tmp_path / "saved")
    source = ProofBench(path=str(saved))
    problems = source.load()
    assert [p.id for p in problems] == ["APMO-2023-2", "USAMO-2025-1"]
    assert problems[0].rubric.startswith("1. (3 pts)") and problems[0].solution.startswith("$n^2-5n+6")
    assert problems[0].metadata == {"subset": "other", "contest": "APMO", "year": "2023"}
    assert problems[1].metadata["subset"] == "2024-2025"
    attempts = source.attempts()
    assert [(a.id, a.human_points) for a in attempts] == [
        ("APMO-2023-2/0", 7.0),
        ("APMO-2023-2/1", 3.0),
        ("APMO-2023-2/2", 0.0),
        ("USAMO-2025-1/0", 7.0),
        ("USAMO-2025-1/1", 3.0),
        ("USAMO-2025-1/2", 0.0),
    ]
    assert attempts[1].metadata["generator"] == "gemini-2.5-pro" and attempts[1].proof.startswith("Proof by gemini")
    assert ProofBench(path=str(FIXTURES / "proofbench_ma.jsonl")).load() == problems
    assert [a.problem_id for a in ProofBench(path=str(saved), subsets=["2024-2025"]).attempts()] == ["USAMO-2025-1"] * 3


def test_proofbench_rows_that_disagree_are_errors(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "proofbench_ma.jsonl").read_text().splitlines()]
    rows[1]["problem"] = "A different statement."
    rows[2]["expert_rating"] = 9
    path = tmp_path / "pb.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError) as err:
        ProofBench(path=str(path)).load()
    assert f"{path}:2: problem: differs from an earlier row of problem 'APMO-2023-2'" in str(err.value)
    assert f"{path}:3: expert_rating: expected a number in 0..7, got 9" in str(err.value)


def test_proofbench_split_must_exist(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "proofbench_ma.jsonl").read_text().splitlines()]
    saved = save_hub_copy(rows, tmp_path / "saved")
    with pytest.raises(ConfigError, match=r"no split 'best_of_n'; splits are \['train'\]"):
        ProofBench(path=str(saved), split="best_of_n").load()


# ------------------------------------------------------------------- MathArena, tables, union


def test_matharena_competition() -> None:
    problems = MathArena(path=str(FIXTURES / "matharena_comp_2025.jsonl")).load()
    assert [p.id for p in problems] == ["matharena_comp_2025-1", "matharena_comp_2025-2"]
    assert (
        problems[0].rubric
        == "- Square (5 points): Writes $(a-b)^2 \\ge 0$.\n- Conclude (2 points): Expands and concludes."
    )
    assert problems[1].rubric.startswith("- Construction (4 points): Considers")
    assert problems[0].max_points == 7 and problems[0].source == "matharena/matharena_comp_2025"
    named = MathArena(path=str(FIXTURES / "matharena_comp_2025.jsonl"), competition="usamo_2025").load()
    assert named[1].id == "usamo_2025-2"


def test_table_with_column_mapping_from_csv_jsonl_and_parquet(tmp_path: Path) -> None:
    rows = [
        {"qid": "q1", "text": "Prove $1 < 2$.", "ref": "Obvious.", "topic": "Algebra"},
        {"qid": "q2", "text": "Prove $2 < 3$.", "ref": "Also obvious.", "topic": "Geometry"},
    ]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(tmp_path / "t.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pytest.importorskip("pyarrow", reason="parquet files are read with pyarrow (a dependency of datasets)")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    mapping = {"id": "qid", "statement": "text", "solution": "ref"}
    loaded = [
        Table(path=str(tmp_path / f"t.{ext}"), name="mine", columns=mapping, metadata=["topic"]).load()
        for ext in ("csv", "jsonl", "parquet")
    ]
    assert loaded[0] == loaded[1] == loaded[2]
    assert loaded[0][1].id == "q2" and loaded[0][1].solution == "Also obvious." and loaded[0][1].source == "mine"
    assert loaded[0][1].metadata == {"topic": "Geometry"}
    anonymous = Table(path=str(tmp_path / "t.jsonl"), columns={"statement": "text"}).load()
    assert len(anonymous[0].id) == 12 and anonymous[0].id != anonymous[1].id
    with pytest.raises(ConfigError, match=r"t\.csv:2: statement_text: no such column"):
        Table(path=str(tmp_path / "t.csv"), columns={"statement": "statement_text"}).load()


def test_problem_source_union_picks_by_source(tmp_path: Path) -> None:
    adapter = TypeAdapter(ProblemSource)
    assert isinstance(adapter.validate_python({"path": "x.jsonl"}), ProblemFile)  # `source: file` is the default
    assert isinstance(adapter.validate_python({"source": "imo-answerbench"}), IMOAnswerBench)
    assert adapter.validate_python({"source": "imo-proofbench", "subsets": ["Basic"]}).hub == "lm-provers/IMOProofBench"
    with pytest.raises(ValidationError, match="imo-bench"):
        adapter.validate_python({"source": "imo-bench"})
    with pytest.raises(ValidationError, match="levels"):
        adapter.validate_python({"source": "imo-answerbench", "levels": ["IMO-easy"]})


def test_missing_datasets_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ConfigError, match=r"needs the `datasets` package: pip install 'qednano\[eval\]'"):
        IMOProofBench(hub="lm-provers/IMOProofBench").load()
    (tmp_path / "copy").mkdir()
    with pytest.raises(ConfigError, match="local copy of a hub dataset needs the `datasets` package"):
        IMOProofBench(path=str(tmp_path / "copy")).load()


# ----------------------------------------------------------------------------- real data


def test_real_imobench_files(imobench_dir: Path) -> None:
    proofs = IMOProofBench(path=str(imobench_dir / "proofbench_v2.csv")).load()
    assert len(proofs) == 60
    assert sum(p.metadata["subset"] == "Basic" for p in proofs) == 30
    answers = IMOAnswerBench(path=str(imobench_dir / "answerbench_v2.csv")).load()
    assert len(answers) == 400
    by_category = {c: sum(p.metadata["category"] == c for p in answers) for c in ("Algebra", "Geometry")}
    assert by_category == {"Algebra": 100, "Geometry": 100}
    fixed = next(p for p in answers if p.id == "imo-bench-algebra-036")
    assert fixed.answer == "$Y(x)=A+\\frac{B}{x}-x$" and fixed.metadata["origin"] == "Iran 2002"
    assert fixed.statement.endswith("\\]") and "Y(x)=A" not in fixed.statement


# ------------------------------------------------- list-of-items rubrics pass through the normaliser (issue 10, item 16)

SCHEMA = [  # the `schema` column of lm-provers/FineProofs-RL: title, points, description
    {"title": "Set up the induction", "points": 2, "description": "States the base case $n=1$ and the hypothesis."},
    {"title": "Inductive step", "points": 5, "description": "Shows $P(n) \\Rightarrow P(n+1)$."},
]
CANONICAL = (
    "## Checkpoints (7 pts total)\n1. [2 pts] Set up the induction: States the base case $n=1$ and the hypothesis.\n"
    "2. [5 pts] Inductive step: Shows $P(n) \\Rightarrow P(n+1)$.\nTotal (max 7)"
)


def test_table_source_renders_a_list_rubric_in_every_file_form(tmp_path: Path) -> None:
    rows = [{"task": "Prove $P(n)$ for all $n$.", "schema": SCHEMA}]
    (tmp_path / "t.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with open(tmp_path / "t.csv", "w", newline="") as fh:  # a CSV copy holds the list's Python repr
        writer = csv.writer(fh)
        writer.writerow(["task", "schema"])
        writer.writerow([rows[0]["task"], str(SCHEMA)])
    hub = save_hub_copy(rows, tmp_path / "hub")
    mapping = {"statement": "task", "rubric": "schema"}
    for path in (tmp_path / "t.jsonl", tmp_path / "t.csv", hub):
        (problem,) = Table(path=str(path), columns=mapping).load()
        assert problem.rubric.startswith(CANONICAL), (path, problem.rubric)
        assert "{'title'" not in problem.rubric and '"title"' not in problem.rubric


def test_proofbench_fallback_schema_column_is_normalised(tmp_path: Path) -> None:
    row = {"problem_id": "X-2024-1", "problem": "Prove $P(n)$.", "solution": "By induction.", "schema": SCHEMA}
    path = tmp_path / "pb.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (problem,) = ProofBench(path=str(path)).load()
    assert problem.rubric.startswith(CANONICAL) and "{'title'" not in problem.rubric
    text_row = {**row, "schema": "1. (7 pts) Everything."}
    path.write_text(json.dumps(text_row) + "\n")
    assert ProofBench(path=str(path)).load()[0].rubric == "1. (7 pts) Everything."  # text keeps its wording


def test_a_source_can_read_several_splits(tmp_path: Path) -> None:
    """lm-provers/ProofBench is split by year (24_25, other): the paper's recipe reads both."""
    datasets = pytest.importorskip("datasets", reason="local dataset copies need the `eval` extra (datasets)")
    row = {"problem": "Prove $P$.", "solution": "S.", "grading_scheme": "1. (7 pts) All."}
    splits = {
        "24_25": datasets.Dataset.from_list([{**row, "problem_id": "USAMO-2025-1"}]),
        "other": datasets.Dataset.from_list([{**row, "problem_id": "APMO-2023-2"}]),
    }
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "pb"))
    both = ProofBench(path=str(tmp_path / "pb"), splits=["24_25", "other"]).load()
    assert [p.id for p in both] == ["USAMO-2025-1", "APMO-2023-2"]
    assert [p.metadata["subset"] for p in both] == ["2024-2025", "other"]
    assert [p.id for p in ProofBench(path=str(tmp_path / "pb"), split="other").load()] == ["APMO-2023-2"]
