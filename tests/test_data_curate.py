"""Curation: the sources in their hub layouts, each filter's keep/drop with its reason, the LLM quality filter, the funnel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qednano.cli import main
from qednano.data.curate import REJECTS_FILE, CurateRecipe, Reject, curate
from qednano.data.filters import QualityFilter, RuleFilters, parse_quality, rule_filters
from qednano.data.sources import Aops, FineProofsRL, FineProofsSFT, Olympiads
from qednano.records import Problem
from qednano.store import read_jsonl
from qednano.testing.fake_server import FakeServer, ScriptedReply

FIXTURES = Path(__file__).parent / "fixtures"
DATA = FIXTURES / "data"
BENCH = {
    "imo-proofbench": {"problems": {"source": "imo-proofbench", "path": str(FIXTURES / "benchmarks/proofbench.csv")}}
}

EXPECTED_REJECTS = {
    "image.json": ("images", "relies on an image"),
    "answer.json": ("answer_in_statement", "gives the answer away"),
    "short.json": ("short_solution", "solution has 3 words"),
    "computational.json": ("computational", "asks only for a value"),
    "easy.json": ("easy_contest", "easy contest 'AMC'"),
    "dup.json": ("duplicate", "duplicate of"),
    "recent.json": ("year_range", "year 2025 > 2024"),
    "contaminated.json": ("contamination", "imo-proofbench PB-Advanced-001"),
}


def hub_copy(jsonl: Path, folder: Path) -> Path:
    """A local copy of a hub dataset in the hub's layout: `data/train-00000-of-00001.parquet`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train-00000-of-00001.parquet")
    return folder


def recipe(tmp_path: Path, **extra: Any) -> CurateRecipe:
    data = {
        "run_dir": str(tmp_path / "curate"),
        "sources": [
            {"source": "aops", "path": str(DATA / "aops.jsonl")},
            {"source": "olympiads", "path": str(DATA / "olympiads.jsonl")},
        ],
        "quality": {"enabled": False},
        "benchmarks": BENCH,
        **extra,
    }
    return CurateRecipe.model_validate(data)


def test_aops_in_the_hub_layout_gives_problems_with_competition_and_year(tmp_path: Path) -> None:
    from_file = Aops(path=str(DATA / "aops.jsonl")).load()
    from_hub_copy = Aops(path=str(hub_copy(DATA / "aops.jsonl", tmp_path / "aops"))).load()
    assert from_file == from_hub_copy
    first = from_file[0]
    assert first.source == "aops"
    assert first.metadata["competition"] == "2022 Memorial Blazhevski-Cane" and first.metadata["year"] == 2022
    assert first.metadata["candidates"] == ["Another way: note that $AMCG$ is a parallelogram."]
    olympiads = Olympiads(path=str(DATA / "olympiads.jsonl")).load()
    assert [(p.metadata["competition"], p.metadata["year"], p.metadata["category"]) for p in olympiads] == [
        ("Baltic Way", 2010, "Algebra"),
        ("Nordic", 2012, "Algebra"),
    ]


def test_fineproofs_sets_load_as_problems_and_sft_examples(tmp_path: Path) -> None:
    rl = FineProofsRL(path=str(DATA / "fineproofs_rl.jsonl")).load()  # rubrics as a checkpoint list and as text
    assert rl[0].metadata["difficulty"] == pytest.approx(0.4762) and "[3 pts]" not in rl[0].rubric
    assert "Factor (3 points)" in rl[0].rubric and rl[1].rubric.startswith("Checkpoints")
    sft = FineProofsSFT(path=str(hub_copy(DATA / "fineproofs_sft.jsonl", tmp_path / "sft")))
    assert len(sft.load()) == 2  # two rows of the same problem give one problem
    examples = sft.examples()
    assert [e.grade for e in examples] == [1.0, pytest.approx(3 / 7), pytest.approx(6 / 7)]
    assert examples[1].messages[-1]["content"] == "<think>Try infinite descent.</think>By descent ..."
    assert sft.load()[1].metadata["year"] == 2023  # from the competition `IMO-2023`


def test_each_filter_drops_what_it_should_with_its_reason_and_keeps_the_rest(tmp_path: Path) -> None:
    outcome = curate(recipe(tmp_path))
    got = {Path(r.problem.metadata.get("path", "")).name: (r.stage, r.reason) for r in outcome.rejects}
    assert set(got) == set(EXPECTED_REJECTS)
    for name, (stage, reason) in EXPECTED_REJECTS.items():
        assert got[name][0] == stage and reason in got[name][1], (name, got[name])
    kept = {Path(p.metadata.get("path", "")).name or p.metadata["competition"] for p in outcome.problems}
    assert kept == {"keep.json", "same-topic.json", "gaps.json", "Baltic Way", "Nordic"}
    on_file = read_jsonl(Path(outcome.files[1]), Reject)
    assert outcome.files[1].name == REJECTS_FILE and on_file == outcome.rejects


def test_filters_can_be_switched_off_and_the_easy_list_is_configurable() -> None:
    problem = Problem(
        id="x", statement="Prove that $n^2 \\geq 0$.", solution="short", metadata={"competition": "2019 HMMT February"}
    )
    names = [n for n, _ in rule_filters(RuleFilters(min_solution_words=0, easy_contests=["HMMT"], images=False))]
    assert names == ["answer_in_statement", "computational", "easy_contest"]
    checks = dict(rule_filters(RuleFilters(easy_contests=["HMMT"])))
    assert checks["easy_contest"](problem) == "easy contest 'HMMT' (2019 HMMT February)"
    assert checks["short_solution"](problem) == "solution has 1 words (< 30)"
    assert dict(rule_filters(RuleFilters()))["easy_contest"](problem) is None


def test_funnel_counts_add_up(tmp_path: Path) -> None:
    outcome = curate(recipe(tmp_path))
    loaded = outcome.funnel[0].left
    assert loaded == 13
    assert loaded == sum(s.dropped for s in outcome.funnel) + len(outcome.problems)
    assert sum(s.dropped for s in outcome.funnel) == len(outcome.rejects)
    for before, after in zip(outcome.funnel, outcome.funnel[1:], strict=False):
        assert after.left == before.left - after.dropped
    report = (tmp_path / "curate" / "report.md").read_text()
    assert "| contamination | 1 | 5 |" in report


def test_parse_quality_reads_the_fenced_verdict_and_rejects_bad_ones() -> None:
    good = 'thinking...\n```json\n{"incomplete": false, "gaps": true, "wrong": false, "disagreement": false, "computational": false, "difficulty": 6}\n```'
    assert parse_quality(good) == {
        "incomplete": False,
        "gaps": True,
        "wrong": False,
        "disagreement": False,
        "computational": False,
        "difficulty": 6,
    }
    assert parse_quality('{"incomplete": "no"}') is None
    assert parse_quality("no verdict at all") is None


def quality_script(calls: list[str]) -> Any:
    def script(body: dict[str, Any]) -> ScriptedReply:
        prompt = body["messages"][0]["content"]
        calls.append(prompt)
        if "Nordic" in prompt or "f(m+n)" in prompt:
            return ScriptedReply(content="I cannot decide.")  # never parsable
        gaps = "GAPPY" in prompt
        verdict = dict.fromkeys(("incomplete", "wrong", "disagreement", "computational"), False)
        return ScriptedReply(content="```json\n" + json.dumps({**verdict, "gaps": gaps, "difficulty": 5}) + "\n```")

    return script


def test_quality_filter_stores_flags_drops_flagged_and_resumes_without_resending(tmp_path: Path) -> None:
    calls: list[str] = []
    with FakeServer(quality_script(calls)) as server:
        model = {"model": "nano", "base_urls": [server.url], "max_retries": 0}
        r = recipe(tmp_path, quality={"tries": 2}, models={"filter": model})
        outcome = curate(r)
        first = len(calls)
        again = curate(r)
        assert len(calls) == first  # every call replayed from the run's call cache
    assert first == 4 + 2  # five problems reach the filter; the unparsable one is asked twice
    flagged = [x for x in outcome.rejects if x.stage == "quality"]
    assert [x.reason for x in flagged] == ["flagged: gaps"] and "GAPPY" in flagged[0].problem.statement
    assert flagged[0].problem.metadata["quality"]["gaps"] is True
    unparsed = [p for p in outcome.problems if p.metadata["competition"] == "Nordic"]
    assert unparsed and unparsed[0].metadata["quality"] is None  # kept, marked unchecked
    assert all(p.metadata["quality"]["gaps"] is False for p in outcome.problems if p is not unparsed[0])
    assert [p.id for p in again.problems] == [p.id for p in outcome.problems]
    drop = recipe(
        tmp_path, quality={"tries": 2, "unparsed": "drop"}, models={"filter": model}, run_dir=str(tmp_path / "b")
    )
    assert QualityFilter(unparsed="drop").unparsed == "drop" and drop.quality.unparsed == "drop"


def test_a_failed_quality_call_leaves_the_problem_pending_and_the_cli_exits_1(tmp_path: Path) -> None:
    def script(body: dict[str, Any]) -> ScriptedReply:
        return ScriptedReply(content="x", delay_s=0) if "GAPPY" not in body["messages"][0]["content"] else boom()

    def boom() -> Any:
        from qednano.testing.fake_server import ErrorReply

        return ErrorReply(400, "bad request")

    with FakeServer(script) as server:
        model = {"model": "nano", "base_urls": [server.url], "max_retries": 0}
        text = json.dumps(
            {**recipe(tmp_path).model_dump(mode="json"), "quality": {"tries": 1}, "models": {"filter": model}}
        )
        path = tmp_path / "curate.yaml"
        path.write_text(text)
        assert main(["curate", str(path)]) == 1
    report = (tmp_path / "curate" / "report.md").read_text()
    assert "1 problems are pending" in report
    stages = json.loads((tmp_path / "curate" / "funnel.json").read_text())
    assert next(s for s in stages if s["name"] == "quality_pending")["dropped"] == 1


def test_repeated_rows_of_a_source_stay_and_are_rejected_as_duplicates(tmp_path: Path) -> None:
    row = (DATA / "aops.jsonl").read_text().splitlines()[0]
    copy = tmp_path / "twice.jsonl"
    copy.write_text(row + "\n" + row + "\n")
    problems = Aops(path=str(copy)).load()
    assert [p.id for p in problems] == [problems[0].id, problems[0].id + "-2"]
    outcome = curate(
        recipe(tmp_path, sources=[{"source": "aops", "path": str(copy)}, {"source": "aops", "path": str(copy)}])
    )
    assert len(outcome.problems) == 1
    assert [r.stage for r in outcome.rejects] == ["duplicate"] * 3
    assert len({r.problem.id for r in outcome.rejects} | {outcome.problems[0].id}) == 4


def test_a_local_table_with_a_column_mapping_gives_competition_and_year(tmp_path: Path) -> None:
    table = tmp_path / "mine.csv"
    table.write_text(
        'question,proof,contest,yr\n"Prove that $1 < 2$.","Obvious.",Putnam,1999\n"Prove that $2 < 3$.","Also.",ISL 2005,\n'
    )
    source = CurateRecipe.model_validate(
        {
            "run_dir": str(tmp_path / "r"),
            "sources": [
                {
                    "source": "corpus-table",
                    "path": str(table),
                    "name": "mine",
                    "columns": {"statement": "question", "solution": "proof"},
                    "competition_column": "contest",
                    "year_column": "yr",
                }
            ],
        }
    ).sources[0]
    problems = source.load()
    assert [(p.source, p.metadata) for p in problems] == [
        ("mine", {"competition": "Putnam", "year": 1999}),
        ("mine", {"competition": "ISL 2005", "year": 2005}),  # no year column value: read from the competition
    ]
    assert problems[0].solution == "Obvious."
