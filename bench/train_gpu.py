"""SFT throughput and MFU on one GPU: `qednano sft` next to a plain PyTorch loop, Qwen3-1.7B and Qwen3-4B shapes.

Random weights (nothing is downloaded), bf16, 8k-token packed rows, gradient checkpointing
and Liger's fused linear cross-entropy on both sides. MFU = 6 x parameters x tokens/s over
the GPU's dense bf16 peak (`--peak-tflops`, 989 for an H100/H200 SXM).

Needs CUDA, `qednano[train,gpu]` (liger-kernel). Run: python bench/train_gpu.py
Last line: `mfu_qednano_4b=X mfu_plain_4b=Y`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

SHAPES = {
    "1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16),
    "4b": dict(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32),
}


def build(shape: str, folder: Path) -> tuple[Path, int]:
    """A random Qwen3 of the given shape, saved with the tiny tokenizer's files (ids only matter here)."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from qednano.llm.tiny_model import build_tiny_model

    tok_dir = build_tiny_model(folder / "tok", arch="qwen3")
    config = Qwen3Config(
        vocab_size=151936,
        num_key_value_heads=8,
        head_dim=128,
        max_position_embeddings=40960,
        tie_word_embeddings=shape == "1.7b",
        **SHAPES[shape],
    )
    with torch.device("cuda"):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    path = folder / shape
    model.save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(tok_dir).save_pretrained(path)
    params = sum(p.numel() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    return path, params


def plain(path: Path, length: int, steps: int) -> float:
    import torch
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16, attn_implementation="sdpa").cuda()
    model.gradient_checkpointing_enable()
    loss_fn = LigerFusedLinearCrossEntropyLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    ids = torch.randint(0, 151936, (1, length), device="cuda")
    for step in range(steps + 2):
        if step == 2:
            torch.cuda.synchronize()
            start = time.perf_counter()
        hidden = model.model(input_ids=ids).last_hidden_state
        loss = loss_fn(model.lm_head.weight, hidden[:, :-1].reshape(-1, hidden.size(-1)), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    rate = steps * length / (time.perf_counter() - start)
    del model, opt
    torch.cuda.empty_cache()
    return rate


def ours(path: Path, folder: Path, length: int, steps: int) -> float:
    from qednano.data.schema import SFTExample
    from qednano.train.recipes import SFTRecipe
    from qednano.train.sft import build_sft_trainer

    words = " ".join(f"w{i % 97}" for i in range(length))
    rows = [
        SFTExample(
            messages=[{"role": "user", "content": "go"}, {"role": "assistant", "content": words}], problem_id=f"p{i}"
        )
        for i in range(steps + 4)
    ]
    data = folder / "sft.jsonl"
    data.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    recipe = SFTRecipe(
        model=str(path),
        output_dir=str(folder / "out"),
        data={"path": str(data)},
        resume=False,
        model_init={"dtype": "bfloat16", "attn_implementation": "sdpa"},
        trainer={
            "max_steps": steps,
            "per_device_train_batch_size": 1,
            "max_length": length,
            "packing": True,
            "bf16": True,
            "gradient_checkpointing": True,
            "use_liger_kernel": True,
            "learning_rate": 1e-5,
            "save_strategy": "no",
            "logging_steps": steps,
            "assistant_only_loss": False,
        },
    )
    trainer = build_sft_trainer(recipe)
    metrics: Any = trainer.train().metrics
    return steps * length / metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="qednano-gpu-bench-"))
    last = ""
    for shape in SHAPES:
        path, params = build(shape, folder)
        mfu = {}
        for side, rate in (
            ("plain", plain(path, args.length, args.steps)),
            ("qednano", ours(path, folder, args.length, args.steps)),
        ):
            mfu[side] = 6 * params * rate / (args.peak_tflops * 1e12)
            print(f"{shape} {side}: {rate:,.0f} tokens/s, MFU {mfu[side]:.3f}", flush=True)
        last = f"mfu_qednano_{shape}={mfu['qednano']:.3f} mfu_plain_{shape}={mfu['plain']:.3f}"
    print(last)


if __name__ == "__main__":
    main()
