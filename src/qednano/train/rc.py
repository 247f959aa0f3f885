"""`qednano rc RECIPE`: Reasoning-Cache RL through TRL's `rollout_func` (paper section 4.3; the original's RC actor).

For each group of `num_generations` identical prompts (TRL sends every prompt that many
times, whatever its docstring says), the rollout builds one state-building trajectory with
the current policy: `turns` reasoning turns, each followed by the frozen summariser's
summary of it, giving the states "no summary" and summaries 1..turns. Each group then draws
one state at random (several rows per problem give several states per problem), and the
group's completions are generated from that state's prompt. Every completion is rewarded
against the original problem (the reward reads `problem_id`), so the G completions at one
state form one GRPO group; the summaries are never trained.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qednano.config import ConfigError
from qednano.llm.cache import CallCache
from qednano.llm.client import LLM, attempt_scope
from qednano.llm.local_engine import STATIC_CACHE
from qednano.prompts import render, template
from qednano.records import Problem
from qednano.train.grpo import build_trainer, train
from qednano.train.recipes import RCRecipe, RCSettings

Generate = Callable[[list[list[int]], int], list[list[int]]]
"""`generate(prompt_ids, max_new_tokens)` -> one completion's token ids per prompt."""


def reasoning_of(text: str, delimiter: str = "</think>") -> str:
    """What a turn contributes to its summary: the thinking before the delimiter (all of it when never closed)."""
    head, sep, _ = text.partition(delimiter)
    return (head if sep else text).replace("<think>", "").strip()


class RCRollout:
    """TRL `rollout_func(prompts, trainer) -> {prompt_ids, completion_ids, logprobs, rc_state}`."""

    def __init__(
        self, summarizer: LLM, settings: RCSettings, tokenizer: Any, *, seed: int = 0, max_completion_length: int = 256
    ) -> None:
        self.by_prompt: dict[str, Problem] = {}
        self.summarizer = summarizer
        self.settings = settings
        self.tokenizer = tokenizer
        self.seed = seed
        self.max_completion_length = max_completion_length
        self.generate: Generate | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.solve = template(settings.solve_prompt)
        self.summarize = template(settings.summarize_prompt)

    def register(self, prompt: str, problem: Problem) -> None:
        """Map a dataset prompt's text to its problem (the rollout only sees prompts)."""
        self.by_prompt[prompt] = problem

    def state_prompt(self, problem: Problem, summary: str) -> list[int]:
        content = render(self.solve, problem=problem.statement, summary=summary or self.settings.no_summary)
        messages = [{"role": "user", "content": content}]
        return list(
            self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
        )

    async def summaries(
        self, step: int, problems: list[Problem], summaries: list[str], turn: int, texts: list[str]
    ) -> list[str]:
        async def one(i: int, problem: Problem) -> str:
            content = render(
                self.summarize, problem=problem.statement, summary=summaries[i], candidate=reasoning_of(texts[i])
            )
            with attempt_scope(f"rc/{step}/{i}/{problem.id}"):
                done = await self.summarizer.complete([{"role": "user", "content": content}], step=f"summarize/{turn}")
            return reasoning_of(done.text) if "</think>" in done.text else done.text.strip()

        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(problems))))

    def states(
        self, step: int, problems: list[Problem], run: Callable[[Any], Any], generate: Generate
    ) -> list[list[str]]:
        """Per problem: the summaries of states 0..turns (state 0 is the empty summary)."""
        summaries = [""] * len(problems)
        states = [[""] for _ in problems]
        limit = self.settings.turn_max_tokens or self.max_completion_length
        for turn in range(1, self.settings.turns + 1):
            prompts = [self.state_prompt(p, s) for p, s in zip(problems, summaries, strict=True)]
            texts = [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in generate(prompts, limit)]
            summaries = run(self.summaries(step, problems, summaries, turn, texts))
            for i, s in enumerate(summaries):
                states[i].append(s)
        return states

    def pick(self, step: int, group: int, problem: Problem) -> int:
        digest = hashlib.sha256(f"{self.seed}/{step}/{group}/{problem.id}".encode()).digest()
        return random.Random(digest).randrange(self.settings.turns + 1)

    def rollout(
        self, prompts: list[Any], num_generations: int, step: int, run: Callable[[Any], Any], generate: Generate
    ) -> dict[str, Any]:
        if len(prompts) % num_generations:
            raise ValueError(f"{len(prompts)} prompts do not split into groups of {num_generations}")
        groups = [prompts[i : i + num_generations] for i in range(0, len(prompts), num_generations)]
        problems = [self.by_prompt[prompt_text(g[0])] for g in groups]
        states = self.states(step, problems, run, generate)
        chosen = [self.pick(step, g, p) for g, p in enumerate(problems)]
        state_ids = [self.state_prompt(p, states[g][chosen[g]]) for g, p in enumerate(problems)]
        rows = [ids for ids in state_ids for _ in range(num_generations)]
        completions = generate(rows, self.max_completion_length)
        return {
            "prompt_ids": rows,
            "completion_ids": completions,
            "logprobs": None,
            "rc_state": [k for k in chosen for _ in range(num_generations)],
        }

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        # The summariser's client lives on one event loop for the whole run: TRL's own (it runs the
        # async judge reward in a thread), else one of ours.
        loop = getattr(trainer, "async_loop", None)
        if loop is None:
            self.loop = self.loop or asyncio.new_event_loop()
        own = self.loop

        def run(coro: Any) -> Any:
            if loop is not None:
                return asyncio.run_coroutine_threadsafe(coro, loop).result()
            assert own is not None
            return own.run_until_complete(coro)

        self.generate = self.generate or hf_generate(trainer)
        return self.rollout(prompts, trainer.num_generations, trainer.state.global_step, run, self.generate)


def prompt_text(prompt: Any) -> str:
    return prompt if isinstance(prompt, str) else str(prompt[-1]["content"])


def hf_generate(trainer: Any) -> Generate:
    """Sampling with the trainer's current policy through transformers' `generate` (the CPU/CI path)."""
    import torch
    from trl.models import unwrap_model_for_generation

    tokenizer = trainer.processing_class

    def generate(prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        out: list[list[int]] = []
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model, torch.no_grad():
            # A run of equal prompts (a group's) samples as one batch; different prompts go one
            # by one, as their lengths differ and padding would change what the policy sees.
            for key, run in itertools.groupby(prompts, key=tuple):
                ids = list(key)
                tensor = torch.tensor([ids] * len(list(run)), device=model.device)
                seqs = model.generate(
                    tensor,
                    attention_mask=torch.ones_like(tensor),
                    max_new_tokens=max_new_tokens,
                    do_sample=True,
                    temperature=trainer.temperature,
                    pad_token_id=tokenizer.pad_token_id,
                    **STATIC_CACHE,
                )[:, len(ids) :].tolist()
                for seq in seqs:
                    out.append(seq[: seq.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in seq else seq)
        return out

    return generate


def run_rc(recipe: RCRecipe) -> Path:
    """Train with Reasoning-Cache rollouts, resuming from the last checkpoint when there is one."""
    if recipe.trainer.get("use_vllm"):
        raise ConfigError(
            "trainer.use_vllm: `qednano rc` generates its states and groups with transformers; "
            "vLLM generation inside the reasoning-cache rollout is not wired yet (set use_vllm: false)"
        )
    Path(recipe.output_dir).mkdir(parents=True, exist_ok=True)
    summarizer = LLM(recipe.models.summarizer, CallCache(Path(recipe.output_dir) / "summarizer_calls.sqlite"))
    trainer = build_trainer(recipe, copies=recipe.rc.states_per_problem)
    rollout = RCRollout(
        summarizer,
        recipe.rc,
        trainer.processing_class,
        seed=trainer.args.seed,
        max_completion_length=trainer.max_completion_length,
    )
    problems = trainer.reward_funcs[0].problems
    for row in trainer.train_dataset:
        rollout.register(prompt_text(row["prompt"]), problems[row["problem_id"]])
    trainer.rollout_func = rollout  # TRL reads it at each generation step
    return train(trainer, recipe)
