"""Shared fixtures: the tiny local model (built once per test session) and paths to shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

LOCAL_EXTRA = ("torch", "transformers", "tokenizers", "safetensors")
"""The `local` extra's packages (pyproject.toml): a test of the transformers engine skips without any of them."""
LOCAL_REASON = 'pip install -e ".[local]"'

SHARED = Path(__file__).resolve().parents[2] / "shared"
IMOBENCH = SHARED / "data" / "imobench"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-style chat model with a locally trained tokenizer (nothing downloaded)."""
    for module in LOCAL_EXTRA:
        pytest.importorskip(module, reason=f"the tiny local model needs {module}: {LOCAL_REASON}")
    from qednano.llm.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def imobench_dir() -> Path:
    """The real IMO-Bench files in ../shared/data; tests using them skip where it is absent."""
    if not IMOBENCH.is_dir():
        pytest.skip(f"shared data not found at {IMOBENCH}")
    return IMOBENCH
