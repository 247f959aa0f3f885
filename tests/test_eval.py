"""`qednano eval`: recipes, planning, and an end-to-end offline eval on the tiny local model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from qednano import cli
from qednano import config as cfg
from qednano.config import ConfigError
from qednano.eval.cells import EvalRecipe, plan
from qednano.eval.runs import RunRecipe
from qednano.records import Attempt
from qednano.report.build import REPORT_FILES
from qednano.scaffolds.direct import Direct

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "benchmarks"


RUN_RECIPES = [*sorted((cfg.PACKAGE_RECIPES / "eval").glob("*.yaml")), cfg.PACKAGE_RECIPES / "demo.yaml"]


def test_the_committed_run_recipes_are_found() -> None:
    assert len(RUN_RECIPES) >= 5


@pytest.mark.parametrize("recipe", RUN_RECIPES, ids=lambda p: p.name)
def test_committed_run_recipes_validate(recipe: Path) -> None:
    if "benchmarks" in recipe.read_text():
        assert plan(cfg.load(recipe, [], EvalRecipe))
    else:  # grader meta-evaluation: a `qednano grade` recipe
        assert cfg.load(recipe, [], RunRecipe).judges


def test_benchmark_recipes_hold_the_official_protocols() -> None:
    loaded = cfg.load(
        cfg.PACKAGE_RECIPES / "eval" / "table1-qed-nano.yaml",
        ["samples=1", "benchmarks.imo-proofbench.problems.limit=5"],
        EvalRecipe,
    )
    proof = loaded.benchmarks["imo-proofbench"]
    assert proof.judge.kind == "proof" and proof.judge.style == "imo_proofbench" and proof.judge.shows_reference
    assert proof.models.judge.model == "gemini-2.5-pro" and proof.problems.limit == 5
    grader = loaded.benchmarks["proofbench"].judge
    assert (grader.style, grader.reference, grader.samples, grader.aggregate) == ("proofbench", True, 5, "median")
    assert loaded.benchmarks["proofbench"].models.judge.model == "o3"
    answers = loaded.benchmarks["imo-answerbench"]
    assert answers.judge.kind == "answer" and answers.scaffold_settings == {"prompt": "answer", "task": "answer"}
    cells = plan(loaded)
    assert [(c.benchmark_label, c.scaffold_label) for c in cells][:2] == [
        ("imo-proofbench", "direct"),
        ("imo-proofbench", "rsa"),
    ]
    direct_on_answers = next(
        c for c in cells if c.benchmark_label == "imo-answerbench" and c.scaffold_label == "direct"
    )
    assert direct_on_answers.scaffold.prompt == "answer"  # the benchmark's scaffold settings
    assert cells[0].scaffold.prompt == "proof"
    assert cells[0].run_dir == Path("runs/eval/qed-nano/imo-proofbench/qed-nano/direct")


def test_unknown_benchmark_name_and_bad_labels(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "e.yaml").write_text("run_dir: r\nbenchmarks: {x: nope}\nmodels: {m: {model: m}}\n")
    with pytest.raises(ConfigError, match=r"benchmark 'nope': .*benchmarks/nope.yaml not found"):
        cfg.load(recipes / "e.yaml", [], EvalRecipe)
    inline = {
        "run_dir": "r",
        "benchmarks": {
            "b": {"problems": {"path": "p.jsonl"}, "judge": {"kind": "answer"}, "models": {"judge": {"model": "j"}}}
        },
        "models": {"bad/label": {"model": "m"}},
        "scaffolds": {"direct": Direct()},
    }
    with pytest.raises(ConfigError, match="model label 'bad/label'"):
        plan(EvalRecipe.model_validate(inline))


def test_benchmark_scaffold_settings_yield_to_the_scaffold_own() -> None:
    bench = {"problems": {"path": "p.jsonl"}, "judge": {"kind": "answer"}, "models": {"judge": {"model": "j"}}}
    recipe = EvalRecipe.model_validate(
        {
            "run_dir": "r",
            "benchmarks": {"b": bench | {"scaffold_settings": {"prompt": "answer", "turns": 9}}},
            "models": {"m": {"model": "m"}},
            "scaffolds": {"plain": {"name": "direct"}, "own": {"name": "direct", "prompt": "proof"}},
        }
    )
    prompts = {c.scaffold_label: c.scaffold.prompt for c in plan(recipe)}
    assert prompts == {"plain": "answer", "own": "proof"}  # `turns` is not a field of `direct`: ignored


def test_end_to_end_offline_eval(tiny_model_dir: Path, tmp_path: Path) -> None:
    tiny = {
        "engine": "transformers",
        "model": str(tiny_model_dir),
        "max_tokens": 24,
        "temperature": 1.0,
        "device": "cpu",
        "seed": 0,
    }
    proofs = tmp_path / "proofs.jsonl"
    proofs.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"p{i}",
                    "statement": f"Prove that ${i}+{i}$ is even.",
                    "rubric": "1. (7 pts) Says why.",
                    "metadata": {"subset": s},
                }
            )
            + "\n"
            for i, s in ((1, "easy"), (2, "hard"))
        )
    )
    recipe = {
        "run_dir": str(tmp_path / "run"),
        "benchmarks": {
            "proofs": {
                "problems": {"source": "file", "path": str(proofs)},
                "judge": {"kind": "proof", "style": "simple", "max_reasks": 0},
                "models": {"judge": tiny},
            },
            "answers": {
                "problems": {"source": "imo-answerbench", "path": str(FIXTURES / "answerbench.csv"), "limit": 2},
                "judge": {"kind": "answer", "llm_fallback": False},
                "models": {"judge": tiny},
                "scaffold_settings": {"prompt": "answer"},
            },
        },
        "models": {"tiny": tiny},
        "scaffolds": {"direct": {"name": "direct"}, "terse": {"name": "direct", "prompt": "answer"}},
        "samples": 2,
        "title": "Offline eval",
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert cli.main(["eval", str(path)]) == 0

    run = tmp_path / "run"
    assert all((run / name).is_file() for name in REPORT_FILES)
    cell = run / "proofs" / "tiny" / "terse"
    attempts = [Attempt.model_validate_json(line) for line in (cell / "attempts.jsonl").read_text().splitlines()]
    assert sorted(a.id for a in attempts) == ["p1/0", "p1/1", "p2/0", "p2/1"]
    assert all(a.transcript and a.transcript[0].step == "solve" for a in attempts)
    assert (cell / "problems.jsonl").is_file() and len(list((cell / "grades").glob("*.jsonl"))) == 1
    assert yaml.safe_load((cell / "recipe.yaml").read_text())["benchmark"] == "proofs"

    report = json.loads((run / "report.json").read_text())
    by_cell = {(s["benchmark"], s["scaffold"]): s for s in report["summaries"]}
    assert sorted(by_cell) == [("answers", "direct"), ("answers", "terse"), ("proofs", "direct"), ("proofs", "terse")]
    for s in by_cell.values():
        assert s["attempts"] == 4 and s["runs"] == 2 and s["missing"] == 0 and s["pending"] == 0
        assert s["output_tokens"] > 0
    assert by_cell["proofs", "direct"]["tokens_vs_direct"] == 1.0
    answers = by_cell["answers", "direct"]
    assert answers["score"]["mean"] is not None and answers["score"]["graded"] == 4  # 0/1 per answer, no LLM needed
    proofs_cell = by_cell["proofs", "direct"]
    assert proofs_cell["score"]["graded"] + proofs_cell["ungraded"] == 4  # noise rarely gives a verdict; never a zero
    assert proofs_cell["ungraded"] == proofs_cell["flags"].get("no_verdict", 0)
    html = (run / "report.html").read_text()
    assert "Offline eval" in html and "qednano-data" in html
    md = (run / "report.md").read_text()
    assert "| tiny | terse |" in md and "### proofs: subsets" in md

    # Resume: everything is done, nothing is sent again.
    assert cli.main(["eval", str(path)]) == 0
    assert len((cell / "attempts.jsonl").read_text().splitlines()) == 4
    # A different recipe in the same run directory is refused.
    assert cli.main(["eval", str(path), "samples=3"]) == 2
