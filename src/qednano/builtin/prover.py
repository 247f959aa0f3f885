"""The built-in prover's starting point: a word-level tokenizer trained on the domain's text, and a fresh Qwen3.

The TRAIN flow of the built-in domain starts here (`qednano sft builtin/sft`, whose `init:`
block names these settings): nothing is downloaded. The tokenizer is a `tokenizers`
WordLevel model trained on the domain's own text (statements, the prompt templates, the
teacher's traces, proofs, summaries and match verdicts). A token is one space-separated word or a
newline, so a fact has one id wherever it stands (`p12` opening a proof line and `p12` in
a rule are the same token, which a few-million-parameter model must match across the
prompt) and a reply's token count is what the teacher engine counts (words and newlines).
Decoding joins words with single spaces and newlines with none, which gives the domain's
text back exactly (an added token such as `</think>` gets a space beside a word; every
reader of built-in text splits on whitespace). The model is a small Qwen3 (0.89M parameters
at the defaults, which `recipes/builtin/sft.yaml` uses), initialised from a config with a
fixed seed.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from qednano.builtin.domain import MAX_DIFFICULTY, generate, vocabulary
from qednano.builtin.teacher import answer, summary
from qednano.prompts import CHAT_TEMPLATE, NO_SUMMARY, candidates_block, render, template

UNKNOWN = "<unk>"
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", UNKNOWN]
THINK = ["<think>", "</think>"]
ROLES = ("system", "user", "assistant")


def fenced_words(text: str, n: int) -> str:
    """A match's proof `n` in the words `grading/fence.py` frames it with (a real marker's code is fresh hex, unknown to any vocabulary)."""
    begin, end = (f"<<<{edge} PROOF {n} 0>>>" for edge in ("BEGIN", "END"))
    return render(template("proof_fence"), what=f"proof {n}", code="0", begin=begin, end=end, content=text)


def corpus(instances: int = 200, seed: int = 0) -> list[str]:
    """The domain's text the tokenizer learns its words from: prompts, teacher traces, proofs, summaries."""
    rng = random.Random(f"qednano-prover-corpus:{seed}")
    texts = [" ".join([*ROLES, *vocabulary()])]
    for i in range(instances):
        instance = generate(10_000_000 + i, 1 + i % MAX_DIFFICULTY)
        statement = instance.statement()
        proof, _ = answer(statement, rng, error_rate=0.5, think=True)
        other, _ = answer(statement, rng, error_rate=0.5, think=True)
        known = summary(instance, proof, [])
        finals = [text.rpartition("</think>")[2].strip() for text in (proof, other)]  # what a match sees
        fenced = [fenced_words(text, n) for n, text in enumerate(finals, 1)]
        match = render(template("builtin_tournament"), problem=statement, first=fenced[0], second=fenced[1])
        texts += [
            render(template("builtin_proof"), problem=statement),
            render(template("builtin_rc_solve"), problem=statement, summary=known),
            render(template("builtin_rc_solve"), problem=statement, summary=NO_SUMMARY),
            render(template("builtin_rc_summarize"), problem=statement, summary="none", candidate=proof),
            render(template("builtin_rsa_aggregate"), problem=statement, candidates=candidates_block([proof] * 4, "")),
            match,
            answer(match, rng, think=True)[0],
            proof,
            known,
        ]
    return texts


def build_tokenizer(seed: int = 0) -> Any:
    """The word-level tokenizer with the ChatML template (its `generation` tags mark assistant tokens for SFT)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel(unk_token=UNKNOWN))
    words.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(" ", behavior="removed"), pre_tokenizers.Split("\n", behavior="isolated")]
    )
    words.decoder = decoders.Sequence(  # words joined by spaces, then no space beside a newline
        [
            decoders.WordPiece(prefix="##", cleanup=False),
            decoders.Fuse(),
            decoders.Replace(" \n", "\n"),
            decoders.Replace("\n ", "\n"),
        ]
    )
    words.train_from_iterator(corpus(seed=seed), trainer=trainers.WordLevelTrainer(special_tokens=SPECIAL))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=words, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=UNKNOWN, bos_token=None
    )
    tok.add_tokens(THINK)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def prover_config(
    vocab_size: int, *, hidden: int = 128, layers: int = 4, heads: int = 4, max_positions: int = 2048, **ids: Any
) -> Any:
    """The prover's Qwen3 config (`ids`: eos/pad/bos token ids); `bench/recall_probe.py` builds the same model."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 3,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=hidden // heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        **ids,
    )


def build_prover(
    path: str | Path, *, hidden: int = 128, layers: int = 4, heads: int = 4, seed: int = 0, max_positions: int = 2048
) -> Path:
    """A fresh prover at `path`: the tokenizer and a randomly initialised Qwen3 (an existing one is kept)."""
    path = Path(path)
    if (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file():
        return path
    import torch
    from transformers import Qwen3ForCausalLM

    tok = build_tokenizer(seed)
    torch.manual_seed(seed)
    config = prover_config(
        len(tok),
        hidden=hidden,
        layers=layers,
        heads=heads,
        max_positions=max_positions,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen3ForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(path)
    model.save_pretrained(path, safe_serialization=True)
    return path
