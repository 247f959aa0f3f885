"""Training on TRL, for real, on a tiny Qwen3 built from a config with a locally trained tokenizer.

SFT loss falls; GRPO steps run with the project's judge against a judge on the loopback
server (verdicts, replies with no verdict -> reward None, completions that never close
their reasoning -> the truncation reward without a judge call); the Reasoning-Cache rollout
builds the right states and groups; a SIGKILLed run resumes from its checkpoint.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("torch", reason="training needs the `train` extra (torch)")
pytest.importorskip("trl", reason="training needs the `train` extra (trl)")
pytest.importorskip("datasets", reason="training needs the `train` extra (datasets)")

from qednano import cli
from qednano import config as cfg
from qednano.data.schema import RLProblem, SFTExample
from qednano.grading.judge import ProofJudge
from qednano.llm.client import LLM
from qednano.llm.tiny_model import build_tiny_model
from qednano.llm.types import ModelConfig
from qednano.records import Problem
from qednano.testing.fake_server import FakeServer, ScriptedReply
from qednano.train.rc import RCRollout
from qednano.train.recipes import GRPORecipe, RCRecipe, RCSettings, RewardSettings, SFTRecipe
from qednano.train.rewards import JudgeReward

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen3", arch="qwen3")


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(r.model_dump_json() + "\n" for r in rows))
    return path


def sft_rows(n: int = 24) -> list[SFTExample]:
    answer = "<think>small cases first</think>By induction on n the sum is n(n+1)/2, which completes the proof."
    return [
        SFTExample(
            messages=[
                {"role": "user", "content": f"Prove the sum formula, case {i % 3}."},
                {"role": "assistant", "content": answer},
            ],
            problem_id=f"p{i}",
        )
        for i in range(n)
    ]


def rl_rows() -> list[RLProblem]:
    return [
        RLProblem(problem_id=f"q{i}", problem=f"Prove that {i} + 0 = {i}.", rubric="1. [7 pts] The proof.")
        for i in range(4)
    ]


def test_sft_loss_falls_and_the_length_monitor_logs(tiny: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows())
    recipe = SFTRecipe(
        model=str(tiny),
        output_dir=str(tmp_path / "out"),
        data={"path": str(data)},
        trainer={
            "max_steps": 10,
            "per_device_train_batch_size": 4,
            "learning_rate": 3e-3,
            "logging_steps": 1,
            "max_length": 128,
            "packing": True,
            "save_steps": 100,
            "seed": 0,
        },
        length_monitor={"every": 5, "prompts": 2, "max_new_tokens": 8},
    )
    from qednano.train.sft import run_sft

    out = run_sft(recipe)
    history = json.loads(next(out.glob("checkpoint-*/trainer_state.json")).read_text())["log_history"]
    losses = [h["loss"] for h in history if "loss" in h]
    assert len(losses) == 10 and sum(losses[-3:]) / 3 < 0.85 * sum(losses[:3]) / 3
    monitored = [json.loads(line) for line in (out / "length_monitor.jsonl").read_text().splitlines()]
    assert [m["step"] for m in monitored] == [5, 10]
    assert all(0 < m["length/mean"] <= 8 and 0 <= m["length/hit_limit"] <= 1 for m in monitored)
    assert (out / "model.safetensors").is_file()


def judge_replies(body: dict[str, Any]) -> ScriptedReply:
    """Every other proof gets a verdict; the rest get a reply with none."""
    prompt = body["messages"][-1]["content"]
    return ScriptedReply(content="<score>5</score>" if "ODD" in prompt else "I cannot decide.")


def test_reward_is_points_over_max_none_without_verdict_and_truncation_without_a_call(tmp_path: Path) -> None:
    problems = {p.problem_id: p.to_problem() for p in rl_rows()}
    with FakeServer(judge_replies) as server:
        llm = LLM(ModelConfig(model="judge", base_urls=[server.url], max_retries=0))
        judge = ProofJudge.model_validate({"style": "qed_nano_train", "max_reasks": 0})
        reward = JudgeReward(problems, judge, llm, RewardSettings(truncation_reward=-0.5))
        completions = [
            [{"role": "assistant", "content": "<think>hm</think>ODD proof"}],
            [{"role": "assistant", "content": "<think>hm</think>EVEN proof"}],
            [{"role": "assistant", "content": "<think>never closed"}],
        ]
        metrics: dict[str, float] = {}
        import asyncio

        rewards = asyncio.run(reward([None] * 3, completions, ["q0", "q1", "q2"], log_metric=metrics.__setitem__))
        assert server.requests == 2  # the unclosed completion was never sent to the judge
    assert rewards == [5 / 7, None, -0.5]
    assert metrics["reward/truncated_rate"] == pytest.approx(1 / 3)
    assert metrics["reward/ungraded_rate"] == pytest.approx(1 / 3)


def grpo_recipe(tiny: Path, tmp_path: Path, url: str, **extra: Any) -> dict[str, Any]:
    data = write_jsonl(tmp_path / "rl.jsonl", rl_rows())
    return {
        "model": str(tiny),
        "output_dir": str(tmp_path / "grpo"),
        "data": {"path": str(data)},
        "models": {"judge": {"model": "judge", "base_urls": [url], "max_retries": 0}},
        "reward": {"judge": {"kind": "proof", "style": "qed_nano_train", "max_reasks": 0}},
        "trainer": {
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "num_generations": 4,
            "max_completion_length": 16,
            "logging_steps": 1,
            "learning_rate": 1e-3,
            "save_steps": 100,
            "entropy_coef": 1e-4,
            "scale_rewards": "none",
            "seed": 0,
        },
        **extra,
    }


def scripted_rollout(tokenizer: Any) -> Any:
    """Completions that close their reasoning (ODD / EVEN proofs) or never do, cycling."""
    texts = ["<think>a</think>ODD proof", "<think>b</think>EVEN proof", "<think>never closed", "<think>c</think>ODD"]

    def rollout(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        prompt_ids = [
            list(tokenizer.apply_chat_template(p, add_generation_prompt=True, return_dict=True)["input_ids"])
            for p in prompts
        ]
        completion_ids = [[*tokenizer.encode(texts[i % 4]), tokenizer.eos_token_id] for i in range(len(prompts))]
        return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}

    return rollout


@pytest.mark.parametrize("loss", ["trl", "qed-nano"])
def test_grpo_steps_with_the_judge_on_the_loopback_server(tiny: Path, tmp_path: Path, loss: str) -> None:
    from qednano.train.grpo import build_trainer, train

    with FakeServer(judge_replies) as server:
        recipe = GRPORecipe.model_validate(grpo_recipe(tiny, tmp_path, server.url, loss=loss))
        trainer = build_trainer(recipe)
        trainer.rollout_func = scripted_rollout(trainer.processing_class)
        train(trainer, recipe)
        assert server.requests == 2 * 3  # 2 steps x 4 completions, one of each 4 never closed its reasoning
    logs = [h for h in trainer.state.log_history if "reward/ungraded_rate" in h]
    assert len(logs) == 2 and all(h["reward/ungraded_rate"] == pytest.approx(0.25) for h in logs)
    assert all(h["reward/truncated_rate"] == pytest.approx(0.25) for h in logs)
    assert all(h["reward"] == pytest.approx((5 / 7 * 2 + 0) / 3) for h in logs)  # None left out of the mean
    assert all(abs(h["loss"]) < 1e6 for h in trainer.state.log_history if "loss" in h)


def test_grpo_with_the_policys_own_generation(tiny: Path, tmp_path: Path) -> None:
    """TRL's own sampling: a random tiny model never closes its reasoning, so every reward is the truncation reward."""
    from qednano.train.grpo import run_grpo

    with FakeServer(judge_replies) as server:
        recipe = GRPORecipe.model_validate(grpo_recipe(tiny, tmp_path, server.url, loss="qed-nano"))
        out = run_grpo(recipe)
        assert server.requests == 0
    assert (out / "model.safetensors").is_file()


def test_rc_rollout_builds_states_and_groups(tiny: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    problems = [Problem(id=f"q{i}", statement=f"STATEMENT{i}") for i in range(2)]
    summaries: list[str] = []

    def summarize(body: dict[str, Any]) -> ScriptedReply:
        prompt = body["messages"][-1]["content"]
        statement = next(p.statement for p in problems if p.statement in prompt)
        turn = sum(statement in s for s in summaries) + 1
        if turn > 1:  # each summary call sees the summary before it
            assert f"SUMMARY-{statement}-{turn - 1}" in prompt
        summaries.append(f"SUMMARY-{statement}-{turn}")
        return ScriptedReply(content=summaries[-1])

    generated: list[tuple[int, int]] = []

    def policy(prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        generated.append((len(prompts), max_new_tokens))
        return [tokenizer.encode(f"<think>thought {len(p)}</think>proof") for p in prompts]

    with FakeServer(summarize) as server:
        llm = LLM(ModelConfig(model="summarizer", base_urls=[server.url], max_retries=0))
        rollout = RCRollout(llm, RCSettings(turns=3, turn_max_tokens=32), tokenizer, seed=7, max_completion_length=64)
        prompts = []
        for p in problems:
            rollout.register(f"ask {p.statement}", p)
            prompts += [[{"role": "user", "content": f"ask {p.statement}"}]] * 4
        import asyncio

        loop = asyncio.new_event_loop()
        out = rollout.rollout(prompts, 4, step=0, run=loop.run_until_complete, generate=policy)
        loop.close()
    assert len(summaries) == 3 * 2  # one summary per turn per group
    assert generated == [(2, 32)] * 3 + [(8, 64)]  # 3 state-building turns, then the groups from their states
    assert len(out["prompt_ids"]) == len(out["completion_ids"]) == 8 and out["logprobs"] is None
    for g, problem in enumerate(problems):
        rows = out["prompt_ids"][4 * g : 4 * g + 4]
        assert all(r == rows[0] for r in rows)  # one state per group
        state = out["rc_state"][4 * g]
        text = tokenizer.decode(rows[0])
        assert problem.statement in text
        if state == 0:
            assert "SUMMARY-" not in text
        else:
            assert f"SUMMARY-{problem.statement}-{state}" in text and text.count("SUMMARY-") == 1
    assert set(out["rc_state"]) <= {0, 1, 2, 3}


def test_rc_policy_samples_a_groups_equal_prompts_as_one_batch(tiny: Path) -> None:
    """`hf_generate`: a run of equal prompts is one `generate` call of that many rows; each reply ends at its EOS."""
    from types import SimpleNamespace

    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from qednano.train.rc import hf_generate

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    batches: list[int] = []
    sample = model.generate

    def counting(input_ids: Any, **kwargs: Any) -> Any:
        batches.append(len(input_ids))
        return sample(input_ids, **kwargs)

    model.generate = counting  # type: ignore[method-assign]
    trainer = SimpleNamespace(
        model_wrapped=model, accelerator=Accelerator(cpu=True), processing_class=tokenizer, temperature=1.0
    )
    a, b = tokenizer.encode("first state"), tokenizer.encode("a second, longer state")
    out = hf_generate(trainer)([a, a, a, b, b], 12)
    assert batches == [3, 2]  # one call a group, not one a row
    assert len(out) == 5
    for seq in out:
        assert 1 <= len(seq) <= 12
        assert tokenizer.eos_token_id not in seq[:-1] and tokenizer.pad_token_id not in seq[:-1]


def test_a_killed_training_run_resumes_from_its_checkpoint(tiny: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(64))
    recipe = tmp_path / "sft.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny),
                "output_dir": str(tmp_path / "out"),
                "data": {"path": str(data)},
                "trainer": {
                    "max_steps": 40,
                    "per_device_train_batch_size": 2,
                    "save_steps": 2,
                    "logging_steps": 1,
                    "max_length": 128,
                    "seed": 0,
                    "dataloader_num_workers": 0,
                },
            }
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "qednano", "-v", "sft", str(recipe)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("checkpoint-4")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # a checkpoint being written at the kill has no trainer_state.json yet: resuming passes over it
    kept = sorted(
        int(p.name.split("-")[1])
        for p in (tmp_path / "out").glob("checkpoint-*")
        if (p / "trainer_state.json").is_file()
    )
    assert kept and kept[-1] < 40, "the run was killed before it finished"
    before = tmp_path / "out" / f"checkpoint-{kept[-1]}" / "trainer_state.json"
    stamp = before.stat().st_mtime_ns
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert before.stat().st_mtime_ns == stamp  # not trained again: the run went on from that checkpoint
    state = json.loads((tmp_path / "out" / "checkpoint-40" / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == list(range(1, 41))  # every step once


@pytest.mark.parametrize("folder", ["sft", "grpo", "rc"])
def test_shipped_training_recipes_validate(folder: str) -> None:
    schema = {"sft": SFTRecipe, "grpo": GRPORecipe, "rc": RCRecipe}[folder]
    recipes = sorted((cfg.PACKAGE_RECIPES / folder).glob("*.yaml"))
    assert recipes
    for path in recipes:
        cfg.load(path, [], schema)


def test_dry_run_prints_the_resolved_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["grpo", "grpo/qed-nano", "--dry-run"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["trainer"]["num_generations"] == 16 and out["loss"] == "qed-nano"
    assert out["reward"]["judge"]["style"] == "qed_nano_train"


def test_rc_training_steps_through_trl(tiny: Path, tmp_path: Path) -> None:
    """`run_rc`: TRL calls the rollout with its own policy generation; the summariser is on the loopback server."""
    from qednano.train.rc import run_rc

    with FakeServer(lambda body: ScriptedReply(content="I tried small cases.")) as server:
        data = grpo_recipe(tiny, tmp_path, server.url)
        data["models"]["summarizer"] = {"model": "summarizer", "base_urls": [server.url], "max_retries": 0}
        data["rc"] = {"turns": 2, "states_per_problem": 2, "turn_max_tokens": 8}
        data["trainer"] |= {"max_steps": 1, "max_completion_length": 8, "num_generations": 2}
        out = run_rc(RCRecipe.model_validate(data))
        assert server.requests == 2 * 2  # 2 groups x 2 turns of summaries; the judge never ran (nothing closed)
    assert (out / "model.safetensors").is_file()


def test_the_qed_nano_loss_is_the_token_sum_over_the_samples(tiny: Path, tmp_path: Path) -> None:
    """On-policy the ratio is 1, so the original's loss is -sum(A x tokens) / samples - coef x sum(entropy) / samples."""
    import torch

    from qednano.train.grpo import build_trainer

    with FakeServer(judge_replies) as server:
        recipe = GRPORecipe.model_validate(grpo_recipe(tiny, tmp_path, server.url, loss="qed-nano"))
        trainer = build_trainer(recipe)
    torch.manual_seed(0)
    b, p, c = 4, 5, 7
    mask = torch.ones(b, c, dtype=torch.long)
    mask[0, 3:] = 0
    mask[2, 5:] = 0
    inputs = {
        "prompt_ids": torch.randint(3, 300, (b, p)),
        "prompt_mask": torch.ones(b, p, dtype=torch.long),
        "completion_ids": torch.randint(3, 300, (b, c)),
        "completion_mask": mask,
        "advantages": torch.tensor([0.5, -0.25, 1.0, -1.25]),
        "num_items_in_batch": mask.sum(),
    }
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer._compute_loss(trainer.model, inputs)
    entropy = (trainer._qed_entropies * mask).sum() / b
    expected = -(inputs["advantages"][:, None] * mask).sum() / b - trainer.entropy_coef * entropy
    assert trainer.entropy_coef == 1e-4 and loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_assistant_only_loss_trains_the_assistant_turn_alone(tiny: Path, tmp_path: Path) -> None:
    from qednano.train.sft import build_sft_trainer

    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(4))
    recipe = SFTRecipe(
        model=str(tiny),
        output_dir=str(tmp_path / "out"),
        data={"path": str(data)},
        trainer={"max_steps": 1, "packing": False, "max_length": 128},
    )
    row = build_sft_trainer(recipe).train_dataset[0]
    labels = row.get("labels") or [
        t if m else -100 for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True)
    ]
    trained = [t for t, label in zip(row["input_ids"], labels, strict=True) if label != -100]
    from transformers import AutoTokenizer

    text = AutoTokenizer.from_pretrained(tiny).decode(trained)
    assert 0 < len(trained) < len(row["input_ids"])
    assert text.startswith("<think>") and "Prove" not in text and text.endswith("<|im_end|>")


def test_rc_refuses_vllm_generation_it_does_not_do(tmp_path: Path) -> None:
    from qednano.config import ConfigError
    from qednano.train.rc import run_rc

    recipe = cfg.load("rc/qed-nano", [f"output_dir={tmp_path}", "trainer.use_vllm=true"], RCRecipe)
    with pytest.raises(ConfigError, match="use_vllm"):
        run_rc(recipe)
