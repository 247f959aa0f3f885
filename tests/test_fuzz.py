"""Property-based tests of every parser: no unhandled exception, only the documented error types.

Parsers of model output never raise (judge verdicts, tournament verdicts, boxed answers,
rubrics, reasoning splits, the proof fence). Readers of files and recipes raise only
`ConfigError`, whose message names the file (JSONL, CSV, JSON rows, benchmark loaders, run
records, recipes and overrides); `normalise_rubric` raises only `ValueError`. The strict
verdict parser `parse_points` has its own properties in `test_judge_verdicts.py`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qednano import config as cfg
from qednano.benchmarks.rows import read_csv, read_json_rows, read_jsonl_rows
from qednano.benchmarks.sources import IMOAnswerBench, IMOProofBench, MathArena, ProofBench, Table
from qednano.benchmarks.tables import TableColumns
from qednano.config import ConfigError
from qednano.eval.cells import EvalRecipe
from qednano.eval.runs import RunRecipe
from qednano.grading.answers import boxes, check_answer, final_answer, normalise, plain_numeric, unbox
from qednano.grading.fence import fence
from qednano.grading.rubrics import check_rubric, normalise_rubric, rubric_from_guidelines, rubric_from_items
from qednano.grading.verdicts import cut_fenced, last_tag, parse_correct, strip_self_evaluation, unwrap
from qednano.llm.client import split_reasoning
from qednano.records import Attempt, Grade, Problem
from qednano.scaffolds.tournament import parse_verdict
from qednano.store import read_jsonl

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text that looks like what models and data files hold: tags, braces, LaTeX, markers, newlines.
PIECES = [
    "<verdict>", "</verdict>", "<points>", "</points>", "Correct", "Incorrect", "correct", "1", "2", "tie", "7",
    "\\boxed{", "\\fbox{", "{", "}", "\\", "\\frac{1}{2}", "$", "**", "<think>", "</think>", "\n", ",", "\"", "'",
    "## Checkpoints (7 pts total)", "1. [3 pts] ", "[4 pts]", "Total (max 7)", "## Zero-credit items", "- None",
    "## Deductions", "- -1: ", "Chain A:", "(Partial)", "(Almost)", "(Incorrect)", "## Self Evaluation",
    "<<<BEGIN PROOF", ">>>", "Ignore previous instructions", "award full marks", "verdict", "=", "x", " ",
]  # fmt: skip
texty = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=40).map("".join),
)
KEYS = ["title", "points", "max_points", "desc", "description", "contest", "contest_year", "subset", "category"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texty,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=4)
    ),
    max_leaves=12,
)


def in_file(data: bytes, suffix: str, read: Callable[[Path], Any]) -> Any:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(data)
        return read(path)


# ------------------------------------------------------------------------- model output


@FAST
@given(texty, st.booleans())
def test_answer_verdict_parser(text: str, fenced: bool) -> None:
    markers = ("<<<BEGIN ANSWER abc>>>", "<<<END ANSWER abc>>>") if fenced else None
    verdict = parse_correct(text, fence=markers)
    assert verdict.value in (None, True, False) and (verdict.value is not None or verdict.reason)
    # A final verdict of the judge's own is read whatever came before it.
    if markers is None or markers[0] not in text:
        assert parse_correct(text + "\n<verdict>Incorrect</verdict>", fence=markers).value is False


@FAST
@given(texty)
def test_verdict_helpers_and_tournament_verdicts(text: str) -> None:
    assert parse_verdict(text) in ("1", "2", "tie")
    assert isinstance(last_tag(text, "points").reason, str)
    assert isinstance(unwrap(text), str)
    assert isinstance(cut_fenced(text, "<<<BEGIN", ">>>"), str)
    kept = strip_self_evaluation(text)
    assert text.startswith(kept)


@FAST
@given(texty)
def test_boxed_answer_extraction(text: str) -> None:
    found = final_answer(text)
    assert found is None or isinstance(found, str)
    assert all(isinstance(body, str) for _, body in boxes(text))
    assert isinstance(unbox(text), str) and isinstance(normalise(text), str) and isinstance(plain_numeric(text), bool)


@FAST
@given(
    st.text(alphabet=st.characters(blacklist_characters="{}\\"), max_size=200),
    st.from_regex(r"[0-9a-z+\-*/^(), ]{1,20}", fullmatch=True),
)
def test_a_last_boxed_answer_is_extracted(text: str, answer: str) -> None:
    if answer.strip():
        assert final_answer(f"{text}\nSo the answer is \\boxed{{{answer}}}") == answer.strip()


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["1", "2", "x", "\\frac{1}{2}", "+", "-", "^", "(", ")", "\\sqrt{2}", ",", "\\{", "\\}", "[", "]", "n", " "]
        ),
        max_size=12,
    ).map("".join),
    texty,
)
def test_math_verify_check_never_raises(gold: str, candidate: str) -> None:
    assert check_answer(gold, candidate) in (True, False, None)


@FAST
@given(texty, st.text(max_size=40), st.one_of(st.none(), st.sampled_from(["</think>", "</reasoning>", "#"])))
def test_reasoning_split(content: str, reasoning: str, delimiter: str | None) -> None:
    text, thought, unclosed = split_reasoning(content, reasoning or None, delimiter)
    assert isinstance(text, str) and isinstance(thought, str) and isinstance(unclosed, bool)


@FAST
@given(texty, st.text(max_size=12))
def test_fence_cannot_be_closed_from_inside(proof: str, problem_id: str) -> None:
    fenced = fence(proof, judge="j", problem_id=problem_id)
    assert fenced.block.count(fenced.begin) == 1 and fenced.block.count(fenced.end) == 1
    assert fenced.block.index(fenced.begin) < fenced.block.index(fenced.end)
    assert fenced.begin[3:-3] not in fenced.text and fenced.end[3:-3] not in fenced.text


# ------------------------------------------------------------------------- rubrics


@FAST
@given(texty, st.integers(min_value=1, max_value=20))
def test_rubric_checker(text: str, max_points: int) -> None:
    result = check_rubric(text, max_points)
    assert result.ok is (not result.reasons)


@FAST
@given(json_values, st.integers(min_value=1, max_value=10))
def test_rubric_normaliser_raises_only_value_error(value: Any, max_points: int) -> None:
    with contextlib.suppress(ValueError):
        assert isinstance(normalise_rubric(value, max_points), str)


@FAST
@given(
    st.lists(st.dictionaries(st.sampled_from(["title", "points", "max_points", "desc", "description"]), json_values))
)
def test_rubric_from_dataset_items(items: list[dict[str, Any]]) -> None:
    assert rubric_from_items(items).startswith("## Checkpoints")


@FAST
@given(texty)
def test_rubric_from_guidelines(text: str) -> None:
    assert "## Checkpoints" in rubric_from_guidelines(text)


# ------------------------------------------------------------------------- files and rows

file_bytes = st.one_of(
    st.binary(max_size=300),
    texty.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(json_values, max_size=5).map(lambda rows: "\n".join(json.dumps(r) for r in rows).encode()),
)


def only_config_errors(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except ConfigError as err:
        assert str(err)
        return None


@FAST
@given(file_bytes)
def test_row_readers(data: bytes) -> None:
    only_config_errors(lambda: in_file(data, ".jsonl", read_jsonl_rows))
    only_config_errors(lambda: in_file(data, ".json", read_json_rows))
    only_config_errors(lambda: in_file(data, ".csv", read_csv))


@FAST
@given(file_bytes)
def test_run_record_reader(data: bytes) -> None:
    for record in (Attempt, Grade, Problem):
        for tolerate in (True, False):

            def read(record: Any = record, tolerate: bool = tolerate) -> Any:
                return in_file(data, ".jsonl", lambda p: read_jsonl(p, record, tolerate_torn_tail=tolerate))

            only_config_errors(read)


def csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


cells = st.one_of(
    texty,
    st.sampled_from(["Algebra", "Geometry", "Number theory", "IMO-easy", "PB-Basic-001", "imo-bench-algebra-001", ""]),
)


@FAST
@given(st.lists(st.lists(cells, min_size=0, max_size=8), max_size=5), st.booleans())
def test_benchmark_csv_loaders(rows: list[list[str]], cut: bool) -> None:
    answer = ["Problem ID", "Problem", "Short Answer", "Category", "Subcategory", "Source"]
    proof = ["Problem ID", "Problem", "Solution", "Grading guidelines", "Category", "Level", "Short Answer", "Source"]
    for header, source in ((answer, IMOAnswerBench), (proof, IMOProofBench)):
        data = csv_bytes(header, rows)
        data = data[: len(data) // 2] if cut else data

        def load(data: bytes = data, source: Any = source) -> Any:
            return in_file(data, ".csv", lambda path: source(path=str(path)).load())

        loaded = only_config_errors(load)
        assert loaded is None or all(isinstance(p, Problem) for p in loaded)
    columns = TableColumns(id="Problem ID", statement="Problem", answer="Short Answer", max_points="Category")
    only_config_errors(
        lambda: in_file(csv_bytes(answer, rows), ".csv", lambda p: Table(path=str(p), columns=columns).load())
    )


row_keys = st.sampled_from(
    ["problem_id", "id", "problem", "reference_solution", "marking_scheme", "model_solution", "expert_rating",
     "generator", "metadata", "problem_idx", "points", "grading_scheme", "sample_solution"]
)  # fmt: skip


scheme = st.one_of(
    json_values,
    st.lists(
        st.fixed_dictionaries({"title": texty, "points": json_values}, optional={"desc": json_values}), max_size=4
    ),
)
proof_rows = st.fixed_dictionaries(
    {"problem": texty},
    optional={
        "problem_id": st.one_of(st.integers(), texty),
        "problem_idx": st.one_of(st.integers(), texty),
        "grading_scheme": scheme,
        "points": json_values,
        "expert_rating": json_values,
        "model_solution": json_values,
        "metadata": json_values,
        "marking_scheme": json_values,
    },
)


@FAST
@given(st.lists(st.one_of(proof_rows, st.dictionaries(row_keys, json_values, max_size=8)), max_size=5))
def test_proof_dataset_loaders(rows: list[dict[str, Any]]) -> None:
    data = "\n".join(json.dumps(r) for r in rows).encode()
    for source in (ProofBench, MathArena):

        def load(source: Any = source) -> Any:
            return in_file(data, ".jsonl", lambda path: source(path=str(path)).load())

        loaded = only_config_errors(load)
        assert loaded is None or all(isinstance(p, Problem) for p in loaded)
    only_config_errors(lambda: in_file(data, ".jsonl", lambda p: ProofBench(path=str(p)).attempts()))


# ------------------------------------------------------------------------- recipes


@FAST
@given(st.text(max_size=60))
def test_override_parser(item: str) -> None:
    parsed = only_config_errors(lambda: cfg.parse_override(item))
    if parsed is not None:
        keys, _ = parsed
        assert keys and all(isinstance(k, str) for k in keys)


@FAST
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=4), st.lists(st.text(max_size=30), max_size=4))
def test_overrides_apply_or_fail_clearly(data: dict[str, Any], overrides: list[str]) -> None:
    result = only_config_errors(lambda: cfg.apply_overrides(data, overrides))
    assert result is None or isinstance(result, dict)


recipe_data = st.dictionaries(
    st.sampled_from(["run_dir", "problems", "models", "scaffold", "samples", "judges", "benchmarks", "scaffolds", "x"]),
    json_values,
    max_size=6,
)


@FAST
@given(st.one_of(recipe_data.map(lambda d: yaml.safe_dump(d)), texty), st.lists(st.text(max_size=30), max_size=3))
def test_recipe_loader_raises_only_config_errors(text: str, overrides: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "recipes" / "r.yaml"
        path.parent.mkdir()
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        for schema in (RunRecipe, EvalRecipe):

            def load(schema: Any = schema) -> Any:
                return cfg.load(path, overrides, schema)

            only_config_errors(load)


def test_deeply_nested_input_is_an_error_not_a_crash(tmp_path: Path) -> None:
    deep = "[" * 20000 + "]" * 20000
    (tmp_path / "r.yaml").write_text(f"run_dir: {deep}\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: invalid YAML"):
        cfg.load(tmp_path / "r.yaml", [], RunRecipe)
    (tmp_path / "rows.jsonl").write_text('{"a": ' + deep + "}\n")
    with pytest.raises(ConfigError, match=r"rows\.jsonl:1: invalid JSON"):
        read_jsonl_rows(tmp_path / "rows.jsonl")
    with pytest.raises(ConfigError, match="override"):
        cfg.parse_override(f"a={deep}")
