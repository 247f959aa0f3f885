"""Every scaffold runs offline on the tiny local model (transformers engine), through the pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from qednano.eval.pipeline import generate
from qednano.llm.client import LLM, Models
from qednano.llm.types import ModelConfig
from qednano.records import Attempt, Problem
from qednano.scaffolds import Scaffold
from qednano.store import RunDir

SMALL = [
    {"name": "direct"},
    {"name": "reasoning_cache", "turns": 2, "summary_tokens": 8},
    {"name": "self_check", "passes": 1, "failures": 1, "max_iterations": 2},
    {"name": "nomos", "samples": 3, "keep": 2, "perfect_target": 2},
    {"name": "rsa", "population": 3, "k": 2, "rounds": 1},
    {"name": "dsm", "proofs": 2, "verifications": 2, "refine_top": 1, "critiques": 1, "iterations": 1},
]


async def test_every_scaffold_completes_on_the_tiny_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = ModelConfig(engine="transformers", model=str(tiny_model_dir), max_tokens=16, device="cpu", max_batch=16)
    llm = LLM(config)
    problem = Problem(id="tiny", statement="Prove that there are infinitely many primes.")
    adapter = TypeAdapter(Scaffold)
    try:
        for spec in SMALL:
            scaffold = adapter.validate_python(spec)
            store = RunDir(tmp_path / spec["name"])
            outcome = await generate([problem], scaffold, Models(llm), store)
            assert outcome.done == 1, (spec["name"], outcome.failed)
            [attempt] = store.read("attempts.jsonl", Attempt)
            assert attempt.scaffold == spec["name"] and attempt.transcript
            assert all(c.output_tokens > 0 for c in attempt.transcript)
    finally:
        await llm.aclose()
    if not llm.stats.sent:
        pytest.fail("no call reached the local model")
