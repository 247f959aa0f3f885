"""Shipped recipes: names and relative paths resolve from any directory, the user's own files win, unknown names list what exists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qednano import cli
from qednano import config as cfg
from qednano.config import ConfigError
from qednano.eval.cells import EvalRecipe
from qednano.eval.runs import RunRecipe


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory outside the checkout, with no recipes of its own."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_shipped_run_recipe_loads_by_name_or_by_its_repository_path(elsewhere: Path) -> None:
    by_name = cfg.load("demo", [], EvalRecipe)
    assert cfg.load("recipes/demo.yaml", [], EvalRecipe) == by_name
    assert cfg.load("eval/table1-qed-nano", [], EvalRecipe).benchmarks
    problems = by_name.benchmarks["demo"].problems.load()  # its data file resolves to the package's copy
    assert len(problems) == 4


def test_the_users_own_recipes_win(elsewhere: Path) -> None:
    (elsewhere / "recipes" / "models").mkdir(parents=True)
    (elsewhere / "recipes" / "models" / "tiny.yaml").write_text("engine: openai\nmodel: my-own-tiny\n")
    recipe = cfg.load("demo", [], EvalRecipe)
    assert recipe.models["tiny"].model == "my-own-tiny"
    shipped = (cfg.PACKAGE_RECIPES / "demo.yaml").read_text()
    (elsewhere / "demo.yaml").write_text(shipped.replace("run_dir: runs/demo", "run_dir: mine"))
    assert cfg.load("demo.yaml", [], EvalRecipe).run_dir == "mine"


def test_unknown_names_list_the_names_that_exist(elsewhere: Path) -> None:
    with pytest.raises(ConfigError, match=r"no-such-run: file not found.*eval/table1-qed-nano.*demo"):
        cfg.load("no-such-run", [], EvalRecipe)
    (elsewhere / "r.yaml").write_text("run_dir: r\nproblems: {source: file, path: p.jsonl}\nmodels: {policy: nope}\n")
    with pytest.raises(
        ConfigError, match=r"model 'nope' \(role 'policy'\): models/nope.yaml not found.*qed-nano.*tiny"
    ):
        cfg.load("r.yaml", [], RunRecipe)


def test_recipes_command_lists_every_shipped_folder(elsewhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in (
        "models/tiny",
        "models/qed-nano",
        "benchmarks/imo-proofbench",
        "scaffolds/rsa",
        "eval/table1-qed-nano",
    ):
        assert f"  {name}\n" in out
    assert "runs:\n  demo\n" in out


def test_demo_runs_outside_the_checkout(elsewhere: Path) -> None:
    for module in ("torch", "transformers", "tokenizers", "safetensors"):
        pytest.importorskip(module, reason=f'the demo\'s tiny model needs {module}: pip install -e ".[local]"')
    assert cli.main(["demo", "demo", "samples=1", "benchmarks.demo.problems.limit=1"]) == 0
    report = json.loads((elsewhere / "runs" / "demo" / "report.json").read_text())
    assert {s["scaffold"] for s in report["summaries"]} == {"direct", "reasoning_cache", "rsa"}
