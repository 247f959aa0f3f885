"""`qednano grpo RECIPE`: GRPO with rubric rewards from the judge, on TRL's GRPOTrainer (paper section 4.2).

The RL set's problems become chat prompts (the recipe's prompt template); the reward is
`JudgeReward`. `recipes/grpo/qed-nano.yaml` maps the original's settings onto `GRPOConfig`.

The loss. TRL has no exact match for the original (PipelineRL's `ppo` with
aggregation `sum`): every token's clipped, importance-weighted advantage and its entropy
bonus are summed over all tokens of the optimizer step and multiplied by the constant
1/samples-per-step. `loss: qed-nano` computes that: TRL's `dr_grpo` term is
sum / (batch x max_completion_length) per micro-batch, so it is scaled by
max_completion_length, and the entropy bonus is summed over tokens with the same
normaliser (TRL's own bonus is a per-token mean). Against TRL's built-ins:
`dr_grpo` is this loss divided by max_completion_length (which changes what a
`max_grad_norm` of 0.3 clips and how the entropy bonus weighs against the policy term);
`dapo` divides by the number of tokens in the batch instead of the number of samples, so
long completions weigh less per token. The ratio: the original's is taken against the
sampling policy's logprobs (vLLM); TRL's ratio is against the trainer's old logprobs, with
vLLM's importance-sampling correction as a separate factor when vLLM generates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qednano.llm.cache import CallCache
from qednano.llm.client import LLM
from qednano.prompts import render, template
from qednano.records import Problem
from qednano.train.datasets import read_rl_set
from qednano.train.models import last_checkpoint, load_policy, trainer_config
from qednano.train.recipes import GRPORecipe
from qednano.train.rewards import JudgeReward

JUDGE_CACHE = "judge_calls.sqlite"


def prompt_rows(problems: list[Problem], prompt: str, copies: int = 1) -> list[dict[str, Any]]:
    """One chat prompt per problem (each `copies` times, for several RC states per problem)."""
    text = template(prompt)
    return [
        {"prompt": [{"role": "user", "content": render(text, problem=p.statement)}], "problem_id": p.id}
        for p in problems
        for _ in range(copies)
    ]


def qed_nano_trainer() -> type:
    """GRPOTrainer with the original QED-Nano loss (module docstring)."""
    from trl import GRPOTrainer

    class QedNanoGRPOTrainer(GRPOTrainer):  # type: ignore[misc]
        def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any) -> Any:
            out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
            self._qed_entropies = out[1]
            return out

        def _compute_loss(self, model: Any, inputs: dict[str, Any]) -> Any:
            saved = self.loss_type, self._entropy_bonus_enabled
            self.loss_type, self._entropy_bonus_enabled = "dr_grpo", False
            try:
                loss = super()._compute_loss(model, inputs)
            finally:
                self.loss_type, self._entropy_bonus_enabled = saved
            accumulation = self.current_gradient_accumulation_steps if model.training else 1
            samples = inputs["completion_ids"].size(0) * accumulation  # this process's share of the step
            loss = loss * self.max_completion_length  # dr_grpo's sum / (B * L) / GA  ->  sum / (B * GA)
            if self.entropy_coef and self._qed_entropies is not None:
                mask = inputs["completion_mask"]
                loss = loss - self.entropy_coef * (self._qed_entropies * mask).sum() / samples
            return loss

    return QedNanoGRPOTrainer


def judge_reward(recipe: GRPORecipe, problems: list[Problem]) -> JudgeReward:
    cache = CallCache(Path(recipe.output_dir) / JUDGE_CACHE)
    llm = LLM(recipe.models.judge, cache)
    return JudgeReward({p.id: p for p in problems}, recipe.reward.judge, llm, recipe.reward)


def build_trainer(recipe: GRPORecipe, copies: int = 1) -> Any:
    """The GRPOTrainer of a recipe: policy, RL set prompts, the judge reward, the chosen loss."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    problems = [p.to_problem() for p in read_rl_set(recipe.data)]
    Path(recipe.output_dir).mkdir(parents=True, exist_ok=True)
    model, tokenizer = load_policy(recipe)
    args = trainer_config(recipe, GRPOConfig)
    trainer_class = qed_nano_trainer() if recipe.loss == "qed-nano" else GRPOTrainer
    return trainer_class(
        model=model,
        reward_funcs=[judge_reward(recipe, problems)],
        args=args,
        train_dataset=Dataset.from_list(prompt_rows(problems, recipe.prompt, copies)),
        processing_class=tokenizer,
    )


def train(trainer: Any, recipe: GRPORecipe) -> Path:
    trainer.train(resume_from_checkpoint=last_checkpoint(recipe))
    trainer.save_model(recipe.output_dir)
    trainer.processing_class.save_pretrained(recipe.output_dir)
    return Path(recipe.output_dir)


def run_grpo(recipe: GRPORecipe) -> Path:
    """Train, resuming from the last checkpoint when there is one; returns the folder of the final model."""
    return train(build_trainer(recipe), recipe)
