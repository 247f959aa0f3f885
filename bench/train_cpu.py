"""Training on the CPU: `qednano sft` against a plain PyTorch loop, a GRPO step's time split, the reward stage's overlap.

1. SFT tokens/s through `qednano sft` (TRL's SFTTrainer) and through a plain PyTorch loop on
   the same tiny Qwen3, the same packed data, batch and sequence length, in this run.
2. One GRPO configuration's step time split into generation, reward and update (TRL's own
   generation on the CPU; the judge on the loopback server).
3. The reward stage against a judge on the loopback server in GPU-like timing mode: the
   wall time of one step's rewards over the slowest single judge call of that step (1.0 is
   perfect overlap; the judge calls of a step must not queue behind each other).

Last line: `sft_vs_plain=X reward_over_slowest_call=Y`.
Run: OMP_NUM_THREADS=1 .venv/bin/python bench/train_cpu.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def sft_rows(n: int) -> list[Any]:
    from qednano.data.schema import SFTExample

    answer = "<think>small cases first, then induction</think>" + " ".join(
        f"Step {i}: the claim holds for n = {i} by the previous step." for i in range(12)
    )
    return [
        SFTExample(
            messages=[{"role": "user", "content": f"Prove statement {i}."}, {"role": "assistant", "content": answer}],
            problem_id=f"p{i}",
        )
        for i in range(n)
    ]


def sft_through_qednano(model: Path, data: Path, out: Path, steps: int, batch: int, length: int) -> float:
    from qednano.train.recipes import SFTRecipe
    from qednano.train.sft import build_sft_trainer

    recipe = SFTRecipe(
        model=str(model),
        output_dir=str(out),
        data={"path": str(data)},
        resume=False,
        trainer={
            "max_steps": steps,
            "per_device_train_batch_size": batch,
            "max_length": length,
            "packing": True,
            "packing_strategy": "wrapped",
            "learning_rate": 1e-4,
            "logging_steps": steps,
            "save_strategy": "no",
            "seed": 0,
            "assistant_only_loss": False,
        },
    )
    runtime = build_sft_trainer(recipe).train().metrics["train_runtime"]
    return steps * batch * length / runtime


def sft_plain_loop(model_dir: Path, examples: list[Any], steps: int, batch: int, length: int) -> float:
    """The same packed token stream, AdamW, forward, backward and gradient clipping: nothing but PyTorch."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    stream: list[int] = []
    for ex in examples:
        stream += tokenizer.apply_chat_template(ex.messages, return_dict=True)["input_ids"]
    need = steps * batch * length
    stream = (stream * (need // len(stream) + 1))[:need]
    data = torch.tensor(stream).view(steps, batch, length)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        loss = model(input_ids=data[step], labels=data[step]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # TRL clips at max_grad_norm=1.0 by default
        opt.step()
        opt.zero_grad(set_to_none=True)
    return need / (time.perf_counter() - start)


def grpo_split(model: Path, folder: Path, url: str) -> dict[str, float]:
    """Seconds of one GRPO step in generation, reward and update (TRL's generation; 8 prompts x 4 x 64 tokens)."""
    from qednano.data.schema import RLProblem
    from qednano.train.grpo import build_trainer
    from qednano.train.recipes import GRPORecipe

    rows = [
        RLProblem(problem_id=f"q{i}", problem=f"Prove that {i} + 0 = {i}.", rubric="1. [7 pts] The proof.")
        for i in range(8)
    ]
    data = folder / "rl.jsonl"
    data.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    recipe = GRPORecipe.model_validate(
        {
            "model": str(model),
            "output_dir": str(folder / "grpo"),
            "data": {"path": str(data)},
            "resume": False,
            "models": {"judge": {"model": "judge", "base_urls": [url], "max_retries": 0}},
            "trainer": {
                "max_steps": 3,
                "per_device_train_batch_size": 32,
                "num_generations": 4,
                "max_completion_length": 64,
                "logging_steps": 1,
                "save_strategy": "no",
                "seed": 0,
            },
        }
    )
    trainer = build_trainer(recipe)
    spent = {"generation": 0.0, "reward": 0.0}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return wrapper

    trainer._generate_single_turn = timed("generation", trainer._generate_single_turn)
    trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
    start = time.perf_counter()
    trainer.train()
    total = (time.perf_counter() - start) / 3
    gen, rew = spent["generation"] / 3, spent["reward"] / 3
    return {"step_s": total, "generation_s": gen, "reward_s": rew, "update_s": total - gen - rew}


def reward_overlap(completions: int, slots: int) -> tuple[float, float, float]:
    """(wall, slowest call, ratio) of one step's rewards against a GPU-like judge server."""
    from qednano.grading.judge import ProofJudge
    from qednano.llm.client import LLM
    from qednano.llm.types import ModelConfig
    from qednano.records import Problem
    from qednano.testing.fake_server import FakeServer, ScriptedReply, Timing
    from qednano.train.recipes import RewardSettings
    from qednano.train.rewards import JudgeReward

    timing = Timing(slots=slots, tokens_per_s=100.0, mean_tokens=400.0, sigma=0.6, time_scale=0.01)
    problems = {
        f"q{i}": Problem(id=f"q{i}", statement=f"Prove {i}.", rubric="1. [7 pts] The proof.") for i in range(16)
    }
    with FakeServer(lambda body: ScriptedReply(content="<score>4</score>"), timing=timing) as server:
        llm = LLM(ModelConfig(model="judge", base_urls=[server.url], concurrency=completions, max_retries=0))
        judge = ProofJudge.model_validate({"style": "qed_nano_train", "max_reasks": 0})
        reward = JudgeReward(problems, judge, llm, RewardSettings())
        slowest: list[float] = []
        original = reward.grade_one

        async def grade_one(*args: Any) -> Any:
            grade, seconds = await original(*args)
            slowest.append(seconds)
            return grade, seconds

        reward.grade_one = grade_one  # type: ignore[method-assign]
        texts = [[{"role": "assistant", "content": f"<think>t</think>proof {i}"}] for i in range(completions)]
        ids = [f"q{i % 16}" for i in range(completions)]
        start = time.perf_counter()
        asyncio.run(reward([None] * completions, texts, ids))
        wall = time.perf_counter() - start
    return wall, max(slowest), wall / max(slowest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--completions", type=int, default=64, help="judge calls in the reward step")
    parser.add_argument("--repeats", type=int, default=3, help="SFT timings per side; the best of each is compared")
    args = parser.parse_args()

    from qednano.llm.tiny_model import build_tiny_model
    from qednano.testing.fake_server import FakeServer, ScriptedReply

    folder = Path(tempfile.mkdtemp(prefix="qednano-train-bench-"))
    model = build_tiny_model(folder / "model", arch="qwen3", hidden=128, layers=4)
    examples = sft_rows(64)
    data = folder / "sft.jsonl"
    data.write_text("".join(e.model_dump_json() + "\n" for e in examples))

    # Alternate the two sides and keep each one's best run, so a load spike on this shared machine hits neither alone.
    plain = ours = 0.0
    for i in range(args.repeats):
        plain = max(plain, sft_plain_loop(model, examples, args.steps, args.batch, args.length))
        ours = max(ours, sft_through_qednano(model, data, folder / f"sft{i}", args.steps, args.batch, args.length))
    print(
        f"SFT tokens/s: qednano sft {ours:,.0f}, plain PyTorch loop {plain:,.0f} (batch {args.batch} x {args.length}, {args.steps} steps)"
    )

    with FakeServer(lambda body: ScriptedReply(content="<score>3</score>")) as server:
        split = grpo_split(model, folder, server.url)
    print("GRPO step (8 prompts x 4 generations x 64 tokens): " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()))

    wall, slowest, ratio = reward_overlap(args.completions, slots=args.completions)
    print(f"reward stage: {args.completions} judge calls, wall {wall:.2f} s, slowest call {slowest:.2f} s")
    print(f"sft_vs_plain={ours / plain:.3f} reward_over_slowest_call={ratio:.3f}")


if __name__ == "__main__":
    main()
