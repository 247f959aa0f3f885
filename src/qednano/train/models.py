"""Loading the policy and its tokenizer, and building TRL's config from a recipe's `trainer:` block.

Weights load as safetensors only; remote code runs only when the recipe says so. On a GPU,
FlashAttention 2 and Liger's kernels are used where they are installed; on a machine
without CUDA, TRL's bf16 default is replaced by `use_cpu=True` (TRL raises otherwise).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, TypeVar

from qednano.builtin.prover import build_prover
from qednano.config import ConfigError
from qednano.train.recipes import TrainRecipe

log = logging.getLogger(__name__)

C = TypeVar("C")


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def load_policy(recipe: TrainRecipe) -> tuple[Any, Any]:
    """The model and tokenizer a recipe starts from."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if recipe.init is not None:
        fresh = recipe.init
        build_prover(recipe.model, hidden=fresh.hidden, layers=fresh.layers, heads=fresh.heads, seed=fresh.seed)
    kwargs: dict[str, Any] = {"use_safetensors": True}
    if has_cuda() and installed("flash_attn"):
        kwargs["attn_implementation"] = "flash_attention_2"
    kwargs.update(recipe.model_init)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            recipe.tokenizer or recipe.model, trust_remote_code=recipe.trust_remote_code
        )
        model = AutoModelForCausalLM.from_pretrained(recipe.model, trust_remote_code=recipe.trust_remote_code, **kwargs)
    except OSError as err:
        raise ConfigError(f"model {recipe.model!r}: cannot load: {err}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def trainer_config(recipe: TrainRecipe, config_class: type[C], **ours: Any) -> C:
    """TRL's config: our defaults (output dir, CPU, kernels, no reporting), then the recipe's `trainer:` block."""
    defaults: dict[str, Any] = {"output_dir": recipe.output_dir, "report_to": "none", "save_strategy": "steps", **ours}
    if not has_cuda():
        # TRL's bf16 default raises without CUDA; its gradient-checkpointing default recomputes every
        # forward pass to save memory a CPU run does not need (about 30% of an SFT step here).
        defaults.update(use_cpu=True, bf16=False, gradient_checkpointing=False)
    elif installed("liger_kernel"):
        defaults["use_liger_kernel"] = True
    settings = {**defaults, **recipe.trainer}
    try:
        return config_class(**settings)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"trainer: {err}") from None


def last_checkpoint(recipe: TrainRecipe) -> str | None:
    """The newest complete `checkpoint-N` in the output folder, when resuming is on.

    A run killed while writing a checkpoint leaves it without `trainer_state.json` (written
    last); such a folder is passed over for the one before it.
    """
    if not recipe.resume:
        return None
    found = sorted(
        (p for p in Path(recipe.output_dir).glob("checkpoint-*") if (p / "trainer_state.json").is_file()),
        key=lambda p: int(p.name.rpartition("-")[2] or 0),
    )
    if found:
        log.info("resuming from %s", found[-1])
    return str(found[-1]) if found else None
