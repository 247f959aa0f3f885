"""Decoding speed of the local engine's cache: the default (grown by concatenation) against a static one.

The shipped built-in prover decodes a batch of held-out problems twice in one run, seeded the
way the engine seeds (`RowNoise`), once with each cache, and prints each one's tokens per second,
their ratio, and how many replies came out identical (they should all: the cache changes where
keys and values are kept, not what is computed). `--repeat` copies each statement that many
times into the prompt, to reach the length of an RSA aggregation prompt.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/local_decode.py --batch 64 --tokens 384
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList

from qednano.builtin.domain import generate
from qednano.config import find_file
from qednano.llm.local_engine import RowNoise
from qednano.prompts import render, template


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="recipes/builtin/prover/rc")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=384)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()

    where = str(find_file(args.model))
    tok = AutoTokenizer.from_pretrained(where)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(where).eval()
    proof_prompt = template("builtin_proof")
    prompts = [
        tok.apply_chat_template(
            [
                {
                    "role": "user",
                    "content": render(proof_prompt, problem=generate(2 * i + 1, 1 + i % 6).statement() * args.repeat),
                }
            ],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i in range(args.batch)
    ]
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    print(f"{args.batch} prompts of up to {enc['input_ids'].shape[1]} tokens, up to {args.tokens} new tokens each")

    outputs, speeds = {}, {}
    for cache in ("dynamic", "static"):
        noise = RowNoise(list(range(args.batch)), temperature=0.8, top_p=1.0)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                max_new_tokens=args.tokens,
                pad_token_id=tok.pad_token_id,
                do_sample=False,
                logits_processor=LogitsProcessorList([noise]),
                cache_implementation=cache,
                disable_compile=True,
            )
        seconds = time.perf_counter() - start
        new = out[:, enc["input_ids"].shape[1] :]
        produced = int((new != tok.pad_token_id).sum())
        outputs[cache] = new.tolist()
        speeds[cache] = produced / seconds
        print(f"{cache:>8} cache: {seconds:6.2f} s, {produced} tokens, {speeds[cache]:7.0f} tokens/s")
    same = sum(a == b for a, b in zip(outputs["dynamic"], outputs["static"], strict=True))
    print(f"static / dynamic: {speeds['static'] / speeds['dynamic']:.2f}x; identical replies: {same} of {args.batch}")


if __name__ == "__main__":
    main()
