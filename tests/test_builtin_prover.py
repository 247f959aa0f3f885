"""The built-in prover: its word-level tokenizer, training by the project's own commands, and the shipped checkpoints."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

from qednano.builtin.domain import generate
from qednano.builtin.prover import build_tokenizer
from qednano.builtin.teacher import answer
from qednano.cli import main
from qednano.config import PACKAGE_RECIPES
from qednano.prompts import NO_SUMMARY, render, template
from qednano.records import Grade

pytest.importorskip("transformers", reason="the prover tests train and run a model: pip install 'qednano[train]'")

SHIPPED = PACKAGE_RECIPES / "builtin" / "prover"


def grades(run: Path) -> list[Grade]:
    return [Grade.model_validate_json(line) for f in (run / "grades").glob("*.jsonl") for line in f.open()]


def test_the_tokenizer_gives_the_domains_text_back_word_for_word_with_no_unknown_word() -> None:
    tok = build_tokenizer()
    for d in (1, 5, 10):
        instance = generate(77, d)
        reply, _ = answer(instance.statement(), random.Random(d), error_rate=0.5, think=True)
        for text in (
            render(template("builtin_proof"), problem=instance.statement()),
            render(template("builtin_rc_solve"), problem=instance.statement(), summary=NO_SUMMARY),
            reply,
        ):
            ids = tok(text)["input_ids"]
            assert tok.unk_token_id not in ids
            assert tok.decode(ids) == text
            # one token per word or newline: the count the teacher engine and the eval budgets use
            assert len(ids) == len(text.split()) + text.count("\n")


def test_training_a_small_prover_with_the_commands_raises_the_judges_mean_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Teacher proofs -> grades -> SFT set -> `qednano sft` from scratch; the trained model then scores above the untrained one."""
    monkeypatch.chdir(tmp_path)
    problems = "problems={source: builtin, split: train, seed: 0, count: 4, difficulty: [1, 1]}"  # one source, for both
    teacher = ["builtin/teacher", "run_dir=teacher", problems, "models.policy.extra_body.error_rate=0"]
    assert main(["generate", *teacher]) == 0 and main(["grade", *teacher]) == 0
    export = ["builtin/export", "out_dir=sets", problems, "sft.runs=[teacher]"]
    assert main(["export", *export]) == 0
    sft = [
        "builtin/sft",
        "model=init",
        "output_dir=sft",
        "data.path=sets/sft/train.jsonl",
        "init.hidden=64",
        "init.layers=2",
        "trainer.num_train_epochs=150",
        "trainer.per_device_train_batch_size=4",
        "trainer.save_steps=1000",
    ]
    assert main(["sft", *sft]) == 0

    def mean_score(model: str) -> float:
        recipe = yaml.safe_load((PACKAGE_RECIPES / "builtin" / "teacher.yaml").read_text())
        recipe["run_dir"] = f"score-{model}"
        recipe["problems"] |= {"count": 4, "difficulty": [1, 1]}
        recipe["models"]["policy"] = {
            "engine": "transformers",
            "model": model,
            "max_tokens": 200,
            "temperature": 0,
            "reasoning_delimiter": "</think>",
            "device": "cpu",
        }
        path = tmp_path / f"score-{model}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        assert main(["generate", str(path)]) in (0, 1) and main(["grade", str(path)]) == 0
        scores = [g.points for g in grades(tmp_path / f"score-{model}")]
        assert len(scores) == 4 and all(s is not None for s in scores)
        return sum(s for s in scores if s is not None) / len(scores)

    untrained, trained = mean_score("init"), mean_score("sft")
    assert trained > untrained, (untrained, trained)


@pytest.mark.skipif(not (SHIPPED / "rc" / "model.safetensors").is_file(), reason="the prover is not shipped yet")
def test_the_shipped_checkpoints_fit_the_size_limit_and_name_their_stages() -> None:
    stages = {p.name: p for p in SHIPPED.iterdir() if p.is_dir()}
    assert set(stages) == {"sft", "grpo", "rc", "grpo-d4"}
    size = sum(f.stat().st_size for p in stages.values() for f in p.iterdir())
    assert size <= 25 * 2**20
    for p in stages.values():
        config = json.loads((p / "config.json").read_text())
        assert config["model_type"] == "qwen3"


@pytest.mark.skipif(not (SHIPPED / "rc" / "model.safetensors").is_file(), reason="the prover is not shipped yet")
def test_the_main_job_runs_the_shipped_prover_offline_and_it_proves_something(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo`'s eval, cut to 12 problems and one run: a results table, an HTML report, and scores above 0."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["eval", "builtin/eval", "samples=1", "benchmarks.builtin.problems.count=12"]) == 0
    run = tmp_path / "runs" / "builtin-eval"
    report = json.loads((run / "report.json").read_text())
    scores = {s["scaffold"]: s["score"]["mean"] for s in report["summaries"]}
    assert set(scores) == {"direct", "reasoning_cache", "rsa"}
    assert scores["direct"] > 0 and scores["reasoning_cache"] > 0, scores
    assert (run / "report.html").is_file()
