"""The records: JSON round-trip, deterministic ids, and which call an attempt's truncation comes from."""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from scaffold_script import PROBLEM, scripted_llm

from qednano.config import ConfigError
from qednano.eval.pipeline import generate
from qednano.llm.client import Models
from qednano.records import Attempt, Completion, Grade, Problem, content_id
from qednano.scaffolds.rsa import RSA
from qednano.store import RunDir, read_jsonl


def call(step: str, text: str, *, truncated: bool = False) -> Completion:
    return Completion(
        step=step, model="m", messages=[], text=text, truncated=truncated, input_tokens=3, output_tokens=2
    )


def test_records_round_trip_through_json() -> None:
    problem = Problem(id="p", statement="Prove $\\frac{a}{b} > 0$.", metadata={"year": 2025})
    attempt = Attempt(id="p/0", problem_id="p", sample=0, scaffold="direct", proof="x", transcript=[call("solve", "x")])
    grade = Grade(attempt_id="p/0", problem_id="p", judge="j", points=None, flags=["no_verdict"])
    for record in (problem, attempt, grade):
        assert type(record).model_validate_json(record.model_dump_json()) == record
    assert (attempt.input_tokens, attempt.output_tokens) == (3, 2)


def test_content_ids_are_deterministic() -> None:
    # A fixed value: the same in every process (sha256, never the salted hash()).
    assert content_id("a", 1) == "135f17a475a6"
    assert content_id("a", 1) != content_id("a", 2)


def test_truncation_comes_from_the_call_that_produced_the_proof() -> None:
    # A selection step after the proof's call (RSA's tournament) does not decide truncation.
    cut_then_judged = [call("aggregate/r1.0", "", truncated=True), call("tournament/r1.m0", "<verdict>1</verdict>")]
    assert Attempt(id="p/0", problem_id="p", sample=0, scaffold="rsa", proof="", transcript=cut_then_judged).truncated
    other_cut = [call("solve/0", "proof A"), call("solve/1", "", truncated=True)]
    assert not Attempt(
        id="p/0", problem_id="p", sample=0, scaffold="rsa", proof="proof A", transcript=other_cut
    ).truncated


def test_an_rsa_attempt_stores_each_candidate_once_and_reads_back_whole(tmp_path: Path) -> None:
    ids = itertools.count()

    def respond(kind: str, messages: list[dict[str, Any]]) -> str:  # proofs of about 2,000 tokens
        n = next(ids)
        return "\n".join(f"Step {k} of proof {n}: the claim follows from the one before." for k in range(160))

    llm, _ = scripted_llm(respond)
    store = RunDir(tmp_path / "run")
    rsa = RSA(population=4, k=3, rounds=2, select="random")
    asyncio.run(generate([PROBLEM], rsa, Models(llm), store))
    line = store.file("attempts.jsonl").read_text(encoding="utf-8")
    (attempt,) = store.read("attempts.jsonl", Attempt)
    whole = json.dumps(attempt.model_dump())
    aggregations = [c for c in attempt.transcript if c.step.startswith("aggregate/")]
    assert len(aggregations) == 8 and all(
        c.messages[-1]["content"].count("Step 159 of proof") == 3 for c in aggregations
    )
    assert line.count('"content_parts"') == 8 and len(line) < len(whole) / 2.5
    assert Attempt.model_validate_json(attempt.model_dump_json()) == attempt


def test_a_stored_message_that_names_no_earlier_call_is_refused_with_its_file_line_and_field(tmp_path: Path) -> None:
    first = call("solve", "x" * 300).model_dump()
    second = {**call("aggregate", "y").model_dump(), "messages": [{"role": "user", "content_parts": ["see ", 1]}]}
    bad = Attempt(id="p/0", problem_id="p", sample=0, scaffold="rsa", proof="y").model_dump()
    path = tmp_path / "attempts.jsonl"
    path.write_text(json.dumps({**bad, "transcript": [first, second]}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"attempts\.jsonl:1: .*transcript\[1\]\.messages\[0\]\.content_parts"):
        read_jsonl(path, Attempt)
