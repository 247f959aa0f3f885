"""Recipe loading: overrides, model references, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from qednano import config as cfg
from qednano.benchmarks.sources import ProblemFile
from qednano.config import ConfigError
from qednano.eval.runs import RunRecipe

RECIPE = """\
run_dir: {run_dir}
problems:
  source: file
  path: problems.jsonl
models:
  policy: small
samples: 2
"""

MODEL = """\
engine: openai
model: org/small
base_urls: ["http://127.0.0.1:9/v1"]
temperature: 0.6
"""


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    """A `recipes/` tree with one run recipe and one named model."""
    root = tmp_path / "recipes"
    (root / "models").mkdir(parents=True)
    (root / "models" / "small.yaml").write_text(MODEL)
    (root / "run.yaml").write_text(RECIPE.format(run_dir=tmp_path / "run"))
    return root


def test_named_model_is_resolved_and_overrides_apply(recipes: Path) -> None:
    recipe = cfg.load(recipes / "run.yaml", ["samples=4", "models.policy.temperature=0.1"], RunRecipe)
    assert recipe.samples == 4
    policy = recipe.models.policy
    assert (policy.name, policy.model, policy.temperature) == ("small", "org/small", 0.1)


def test_inline_model_and_override_naming_a_model(recipes: Path) -> None:
    text = RECIPE.format(run_dir="r").replace("policy: small", "policy: {model: inline/m, max_tokens: 9}")
    (recipes / "inline.yaml").write_text(text)
    recipe = cfg.load(recipes / "inline.yaml", ["models.judge=small"], RunRecipe)
    assert recipe.models.policy.model == "inline/m" and recipe.models.policy.max_tokens == 9
    assert recipe.models.judge is not None and recipe.models.judge.model == "org/small"


def test_unknown_key_names_file_line_and_key(recipes: Path) -> None:
    path = recipes / "run.yaml"
    path.write_text(path.read_text().replace("samples: 2", "sampels: 2"))
    with pytest.raises(ConfigError) as err:
        cfg.load(path, [], RunRecipe)
    assert f"{path}:7: sampels: unknown key" in str(err.value)


def test_wrong_type_names_file_line_and_key(recipes: Path) -> None:
    path = recipes / "run.yaml"
    path.write_text(path.read_text().replace("path: problems.jsonl", "path: problems.jsonl\n  limit: lots"))
    with pytest.raises(ConfigError) as err:
        cfg.load(path, [], RunRecipe)
    assert f"{path}:5: problems.limit:" in str(err.value)


def test_error_inside_a_named_model_names_the_model_file(recipes: Path) -> None:
    model = recipes / "models" / "small.yaml"
    model.write_text(MODEL + "temprature: 0.5\n")
    with pytest.raises(ConfigError) as err:
        cfg.load(recipes / "run.yaml", [], RunRecipe)
    assert f"{model}:5: models.policy.temprature: unknown key" in str(err.value)


def test_unknown_override_key_is_named(recipes: Path) -> None:
    with pytest.raises(ConfigError, match=r"models\.policy\.colour: unknown key"):
        cfg.load(recipes / "run.yaml", ["models.policy.colour=red"], RunRecipe)
    with pytest.raises(ConfigError, match="expected key=value"):
        cfg.load(recipes / "run.yaml", ["samples"], RunRecipe)


def test_missing_model_and_missing_file(recipes: Path) -> None:
    with pytest.raises(ConfigError, match=r"model 'nope' \(role 'policy'\)"):
        cfg.load(recipes / "run.yaml", ["models.policy=nope"], RunRecipe)
    with pytest.raises(ConfigError, match="file not found"):
        cfg.load(recipes / "absent.yaml", [], RunRecipe)


def test_malformed_problem_file_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "problems.jsonl"
    path.write_text(
        '{"id": "a", "statement": "Prove A."}\n'
        '{"id": "b", "statement": "Prove B.", "max_points": "seven"}\n'
        '{"id": "c", "statement": "Prove C."}\n'
    )
    with pytest.raises(ConfigError) as err:
        ProblemFile(path=str(path)).load()
    assert f"{path}:2: max_points:" in str(err.value)
    path.write_text('{"id": "a", "statement": "Prove A."}\n{"id": "b"')  # an unterminated line is not torn here
    with pytest.raises(ConfigError, match=f"{path}:2:"):
        ProblemFile(path=str(path)).load()
