"""The built-in offline model: a tiny random Qwen2-style causal LM with a locally trained tokenizer.

Nothing is downloaded. `build_tiny_model(path)` trains a byte-level BPE tokenizer on a
small built-in corpus, gives it a chat template with `<think>` tags, builds a randomly
initialised model from a config and saves both as safetensors. Tests, the offline demo and
the CPU training checks run on it; its text is noise, but every code path is real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from qednano.prompts import CHAT_TEMPLATE

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]
"""Added as ordinary tokens (as in Qwen3), so decoding keeps them and `</think>` can split reasoning."""

CORPUS = [
    "Prove that for every positive integer n, the sum 1 + 2 + ... + n equals n(n+1)/2.",
    "Let a, b, c be positive reals with abc = 1. Show that a + b + c >= 3.",
    "Suppose p is a prime. Then p divides a^p - a for every integer a.",
    "By induction on n: the base case n = 1 holds, and the inductive step follows.",
    "Assume for contradiction that there are finitely many primes p_1, ..., p_k.",
    "Consider the triangle ABC with circumcircle \\omega and incenter I.",
    "Hence \\boxed{42} is the answer, and the proof is complete.",
    "<think>First I try small cases, then I look for an invariant.</think>",
    "We claim the answer is f(x) = x for all real x. Substituting y = 0 gives f(0) = 0.",
    "The inequality follows from AM-GM: (x+y)/2 >= \\sqrt{xy} with equality iff x = y.",
    "Therefore the statement holds for all n, which completes the proof. \\qed",
]


def build_tiny_model(
    path: str | Path,
    *,
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    seed: int = 0,
    arch: Literal["qwen2", "qwen3"] = "qwen2",
    corpus: list[str] | None = None,
) -> Path:
    """Write a tiny random chat model to `path` (idempotent: an existing model is kept).

    `arch="qwen3"` builds the architecture the training stages use (QED-Nano is a Qwen3);
    `corpus` replaces the built-in text the tokenizer is trained on.
    """
    path = Path(path)
    if (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file():
        return path
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator((corpus or CORPUS) * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
    )
    tok.add_tokens(THINK_TOKENS)
    tok.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    shape: dict[str, Any] = dict(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    if arch == "qwen3":
        model: Any = Qwen3ForCausalLM(Qwen3Config(**shape, head_dim=hidden // 4))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**shape))
    path.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(path)
    model.save_pretrained(path, safe_serialization=True)
    return path
