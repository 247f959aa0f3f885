"""Export: structurally valid teacher attempts as SFT conversations, the RL set, three formats; the offline data flow."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from qednano import config as cfg
from qednano.cli import main
from qednano.data.curate import CurateRecipe
from qednano.data.export import ExportRecipe, export, read_set
from qednano.data.schema import RLProblem, SFTExample
from qednano.eval.runs import RunRecipe
from qednano.records import Attempt, Completion, Grade, Problem
from qednano.store import RunDir
from qednano.testing.fake_server import FakeServer, ScriptedReply

FIXTURES = Path(__file__).parent / "fixtures"
RUBRIC = """## Checkpoints (7 pts total)
1. [4 pts] Main idea: finds the key invariant.
2. [3 pts] Finish: completes the argument.
Total (max 7)

## Zero-credit items
- Restating the problem.

## Deductions
- -1: a minor gap.
"""


def attempt(problem: str, sample: int, proof: str, *, truncated: bool = False, reasoning: str = "r") -> Attempt:
    call = Completion(
        step="solve",
        model="teacher",
        messages=[{"role": "user", "content": f"Prove {problem}."}],
        text=proof,
        reasoning=reasoning,
        truncated=truncated,
    )
    return Attempt(
        id=f"{problem}/{sample}", problem_id=problem, sample=sample, scaffold="direct", proof=proof, transcript=[call]
    )


def teacher_run(tmp_path: Path) -> tuple[Path, Path]:
    run = RunDir(tmp_path / "teacher")
    rows = [
        (attempt("a", 0, "## Proof\nGood."), 7),
        (attempt("a", 1, "## Proof\nBetter?"), 3),
        (attempt("a", 2, "## Proof\ncut", truncated=True), 7),
        (attempt("b", 0, "no heading here"), 5),
        (attempt("b", 1, ""), None),
        (attempt("b", 2, "## Proof\nUngraded."), None),
    ]
    for a, points in rows:
        run.append("attempts.jsonl", a)
        if a.proof:
            run.append("grades/j.jsonl", Grade(attempt_id=a.id, problem_id=a.problem_id, judge="j", points=points))
    problems = tmp_path / "problems.jsonl"
    problems.write_text(
        "".join(
            Problem(id=p, statement=f"Prove {p}.", rubric=RUBRIC, source="aops").model_dump_json() + "\n"
            for p in ("a", "b")
        )
    )
    return run.path, problems


def export_recipe(tmp_path: Path, problems: Path, **sft: Any) -> ExportRecipe:
    return ExportRecipe.model_validate(
        {
            "out_dir": str(tmp_path / "out"),
            "problems": {"source": "file", "path": str(problems)},
            "sft": {"runs": [str(tmp_path / "teacher")], **sft},
        }
    )


def test_sft_keeps_structurally_valid_attempts_as_conversations(tmp_path: Path) -> None:
    _, problems = teacher_run(tmp_path)
    outcome = export(export_recipe(tmp_path, problems, proof_pattern=r"(?m)^## Proof"))
    assert [(e.problem_id, e.grade) for e in outcome.sft] == [("a", 1.0), ("a", 3 / 7), ("b", None)]
    assert outcome.dropped == {
        "sft: reasoning not closed or output cut off": 1,
        "sft: no proof section": 1,
        "sft: empty proof": 1,
    }
    first = outcome.sft[0]
    assert first.messages == [
        {"role": "user", "content": "Prove a."},
        {"role": "assistant", "content": "<think>r</think>## Proof\nGood."},
    ]
    assert first.source == "aops"


def test_sft_min_grade_and_one_per_problem(tmp_path: Path) -> None:
    _, problems = teacher_run(tmp_path)
    strict = export(export_recipe(tmp_path, problems, min_grade=0.5))
    assert [(e.problem_id, e.grade) for e in strict.sft] == [("a", 1.0), ("b", 5 / 7)]
    assert strict.dropped["sft: ungraded"] == 1 and strict.dropped["sft: under min_grade"] == 1
    unique = export(export_recipe(tmp_path, problems, one_per_problem=True))
    assert [(e.problem_id, e.grade) for e in unique.sft] == [("a", 1.0), ("b", 5 / 7)]


def test_problems_may_be_a_list_of_sources_whose_union_is_the_problem_set(tmp_path: Path) -> None:
    _, problems = teacher_run(tmp_path)
    more = tmp_path / "more.jsonl"
    more.write_text(
        "".join(
            Problem(id=p, statement=f"Prove {p}.", rubric=RUBRIC, source="aops").model_dump_json() + "\n"
            for p in ("b", "c")
        )
    )
    recipe = export_recipe(tmp_path, problems).model_dump()
    recipe["problems"] = [{"source": "file", "path": str(problems)}, {"source": "file", "path": str(more)}]
    recipe["rl"] = {"selection": {"unmeasured": True}}
    outcome = export(ExportRecipe.model_validate(recipe))
    assert [p.problem_id for p in outcome.rl] == ["a", "b", "c"]  # b, given twice, once
    more.write_text(Problem(id="a", statement="Prove something else.", rubric=RUBRIC).model_dump_json() + "\n")
    with pytest.raises(cfg.ConfigError, match="'a' is given twice with different statements"):
        export(ExportRecipe.model_validate(recipe))


def test_sft_calls_adds_an_attempts_named_calls_that_were_not_cut_off(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "teacher")
    proof = attempt("a", 0, "## Proof\nGood.")
    match = Completion(
        step="tournament/r1.m0",
        model="teacher",
        messages=[{"role": "user", "content": "1 or 2?"}],
        text="<verdict>2</verdict>",
        reasoning="2 holds",
    )
    cut = match.model_copy(update={"step": "tournament/r2.m0", "truncated": True})
    other = match.model_copy(update={"step": "aggregate/r1.0"})
    run.append("attempts.jsonl", proof.model_copy(update={"transcript": [match, cut, other, *proof.transcript]}))
    run.append("grades/j.jsonl", Grade(attempt_id="a/0", problem_id="a", judge="j", points=7))
    _, problems = teacher_run(tmp_path / "unused")
    outcome = export(export_recipe(tmp_path, problems, calls=["tournament/"]))
    assert [e.messages[-1]["content"] for e in outcome.sft] == [
        "<think>r</think>## Proof\nGood.",
        "<think>2 holds</think><verdict>2</verdict>",
    ]
    assert outcome.sft[1].messages[0] == {"role": "user", "content": "1 or 2?"} and outcome.sft[1].grade == 1.0
    assert len(export(export_recipe(tmp_path, problems)).sft) == 1  # no calls named: the proof alone


def test_sets_are_written_in_three_formats_that_read_back_as_the_schema(tmp_path: Path, tiny_model_dir: Path) -> None:
    _, problems = teacher_run(tmp_path)
    outcome = export(export_recipe(tmp_path, problems, tokenizer=str(tiny_model_dir)))
    assert all(e.num_tokens and e.num_tokens > 5 for e in outcome.sft)
    assert "tokens per example: mean" in outcome.report
    out = tmp_path / "out" / "sft"
    for path in (out / "train.jsonl", out / "train.parquet", out / "dataset"):
        assert read_set(path, SFTExample) == outcome.sft, path


def test_a_missing_hub_token_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, problems = teacher_run(tmp_path)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    recipe = export_recipe(tmp_path, problems)
    recipe = ExportRecipe.model_validate(recipe.model_dump() | {"push": {"enabled": True, "sft_repo": "me/sft"}})
    with pytest.raises(cfg.ConfigError, match="HF_TOKEN"):
        export(recipe)


def test_every_shipped_data_recipe_validates() -> None:
    assert cfg.load("data/curate", [], CurateRecipe).models.filter is not None
    assert cfg.load("data/export", [], ExportRecipe).sft is not None
    for name in ("rubrics", "teacher", "difficulty"):
        assert cfg.load(f"data/{name}", [], RunRecipe).problems


# ---------------------------------------------------------------------------- the offline data flow


def judge_and_rubrics(body: dict[str, Any]) -> ScriptedReply:
    """A scripted rubric writer and judge: rubrics in the canonical form, points from a hash of the proof."""
    prompt = body["messages"][-1]["content"]
    if "<points>" not in prompt:
        return ScriptedReply(content=RUBRIC)
    proof = prompt.rsplit("Solution", 1)[-1] if "Solution" in prompt else prompt
    points = int(hashlib.sha256(proof.encode()).hexdigest(), 16) % 8
    return ScriptedReply(content=f"<assessment>ok</assessment><errors>none</errors><points>{points}</points>")


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_offline_data_flow_on_the_tiny_model_gives_sft_and_rl_sets(tmp_path: Path, tiny_model_dir: Path) -> None:
    tiny = {"engine": "transformers", "model": str(tiny_model_dir), "device": "cpu", "max_tokens": 12}
    runs = tmp_path / "runs"
    with FakeServer(judge_and_rubrics) as server:
        remote = {"model": "judge", "base_urls": [server.url], "max_retries": 0}
        curate = write(
            tmp_path / "curate.yaml",
            {
                "run_dir": str(runs / "curate"),
                "sources": [
                    {"source": "aops", "path": str(FIXTURES / "data/aops.jsonl")},
                    {"source": "olympiads", "path": str(FIXTURES / "data/olympiads.jsonl")},
                ],
                "benchmarks": {
                    "imo-proofbench": {
                        "problems": {"source": "imo-proofbench", "path": str(FIXTURES / "benchmarks/proofbench.csv")}
                    }
                },
                "quality": {"tries": 1, "unparsed": "keep"},  # the tiny model's noise is never a verdict
                "models": {"filter": tiny},
            },
        )
        assert main(["curate", str(curate)]) == 0
        curated = runs / "curate" / "problems.jsonl"
        rubrics = {
            "run_dir": str(runs / "rubrics"),
            "problems": {"source": "file", "path": str(curated)},
            "models": {"rubric_writer": remote},
        }
        assert main(["rubrics", str(write(tmp_path / "rubrics.yaml", rubrics))]) == 0
        with_rubrics = runs / "rubrics" / "problems.jsonl"
        judge = [{"kind": "proof", "style": "proofbench_strict", "label": "j", "max_reasks": 0}]
        for name, samples in (("teacher", 2), ("difficulty", 4)):
            recipe = write(
                tmp_path / f"{name}.yaml",
                {
                    "run_dir": str(runs / name),
                    "problems": {"source": "file", "path": str(with_rubrics)},
                    "models": {"policy": tiny, "judge": remote},
                    "scaffold": {"name": "direct", "prompt": "problem_only"},
                    "samples": samples,
                    "judges": judge,
                },
            )
            assert main(["generate", str(recipe)]) == 0
            assert main(["grade", str(recipe)]) == 0
        export_yaml = write(
            tmp_path / "export.yaml",
            {
                "out_dir": str(tmp_path / "sets"),
                "problems": {"source": "file", "path": str(with_rubrics)},
                # the tiny model never closes a thought in 12 tokens: its cut-off outputs are kept here
                "sft": {
                    "runs": [str(runs / "teacher")],
                    "require_closed_reasoning": False,
                    "tokenizer": str(tiny_model_dir),
                },
                "rl": {"runs": [str(runs / "difficulty")], "selection": {"temperature": None, "drop_solved": 1.0}},
            },
        )
        assert main(["export", str(export_yaml)]) == 0
    problems = [json.loads(line) for line in curated.read_text().splitlines()]
    assert len(problems) == 5 and all("quality" in p["metadata"] for p in problems)
    sft = read_set(tmp_path / "sets" / "sft" / "dataset", SFTExample)
    rl = read_set(tmp_path / "sets" / "rl" / "train.parquet", RLProblem)
    assert len(sft) == 10 and all(e.messages[-1]["role"] == "assistant" and e.num_tokens for e in sft)
    assert all(e.messages[0]["content"].strip() in {p["statement"] for p in problems} for e in sft)
    assert rl and all(0 < (r.difficulty or 0) < 1 and re.search(r"Checkpoints", r.rubric) for r in rl)
    assert {r.problem_id for r in rl} <= {p["id"] for p in problems}
    assert rl[0].to_problem().metadata["difficulty"] == rl[0].difficulty

    # The sets are what training reads: one step of `qednano sft` and of `qednano grpo` on them.
    pytest.importorskip("trl", reason="training needs the `train` extra (trl)")
    from qednano.train.grpo import run_grpo
    from qednano.train.recipes import GRPORecipe, SFTRecipe
    from qednano.train.sft import run_sft

    step = {"max_steps": 1, "per_device_train_batch_size": 2, "save_strategy": "no", "seed": 0}
    sft_recipe = SFTRecipe(
        model=str(tiny_model_dir),
        output_dir=str(tmp_path / "sft-model"),
        data={"path": str(tmp_path / "sets" / "sft" / "dataset")},
        trainer={**step, "max_length": 128},
    )
    assert (run_sft(sft_recipe) / "model.safetensors").is_file()
    with FakeServer(judge_and_rubrics) as server:
        grpo_recipe = GRPORecipe.model_validate(
            {
                "model": str(tiny_model_dir),
                "output_dir": str(tmp_path / "grpo-model"),
                "data": {"path": str(tmp_path / "sets" / "rl" / "train.parquet")},
                "models": {"judge": {"model": "judge", "base_urls": [server.url], "max_retries": 0}},
                "trainer": {**step, "num_generations": 2, "max_completion_length": 8},
            }
        )
        assert (run_grpo(grpo_recipe) / "model.safetensors").is_file()


def test_the_published_fineproofs_sets_export_without_curating(tmp_path: Path) -> None:
    recipe = ExportRecipe.model_validate(
        {
            "out_dir": str(tmp_path / "out"),
            "problems": {"source": "fineproofs-rl", "path": str(FIXTURES / "data/fineproofs_rl.jsonl")},
            "sft": {
                "published": {"source": "fineproofs-sft", "path": str(FIXTURES / "data/fineproofs_sft.jsonl")},
                "one_per_problem": True,
            },
            "rl": {"selection": {"temperature": None}},
        }
    )
    outcome = export(recipe)
    assert [round(e.grade or 0, 3) for e in outcome.sft] == [1.0, round(6 / 7, 3)]  # the 3/7 row lost to the 7/7 one
    assert [(r.difficulty, r.problem.startswith("Prove that for every")) for r in outcome.rl] == [(0.4762, True)]
    assert outcome.dropped["rl: solved every time"] == 1
    assert read_set(tmp_path / "out" / "rl" / "train.jsonl", RLProblem) == outcome.rl
    with pytest.raises(cfg.ConfigError, match="needs `problems:`"):
        export(ExportRecipe.model_validate({"out_dir": str(tmp_path), "rl": {}}))
