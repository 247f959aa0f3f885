"""`qednano sft RECIPE`: supervised fine-tuning on teacher proofs with TRL's SFTTrainer (paper section 4.1).

The set is conversations (SFTExample rows); the loss is on the assistant turns only
(`assistant_only_loss`) and rows are packed, as the recipe's `trainer:` block says. The
length monitor samples held-out prompts every k steps and logs the mean completion length
and the share that hit the limit: the length explosion the paper reports after SFT.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from qednano.data.schema import SFTExample
from qednano.train.datasets import read_sft_set
from qednano.train.models import last_checkpoint, load_policy, trainer_config
from qednano.train.recipes import LengthMonitor, SFTRecipe

log = logging.getLogger(__name__)

LENGTHS_FILE = "length_monitor.jsonl"


def sample_lengths(
    model: Any, tokenizer: Any, prompts: list[list[dict[str, Any]]], settings: LengthMonitor
) -> dict[str, float]:
    """Mean completion length and the share of completions that reached `max_new_tokens` without ending."""
    import torch

    was_training = model.training
    model.eval()
    lengths, cut = [], 0
    with torch.no_grad():
        for messages in prompts:
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            ids = {k: v.to(model.device) for k, v in ids.items()}
            out = model.generate(
                **ids,
                max_new_tokens=settings.max_new_tokens,
                do_sample=settings.temperature > 0,
                temperature=settings.temperature or None,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = out[0, ids["input_ids"].shape[1] :].tolist()
            ended = tokenizer.eos_token_id in new
            lengths.append(new.index(tokenizer.eos_token_id) + 1 if ended else len(new))
            cut += not ended
    model.train(was_training)
    return {"length/mean": sum(lengths) / len(lengths), "length/hit_limit": cut / len(lengths)}


def make_monitor(settings: LengthMonitor, prompts: list[list[dict[str, Any]]], out: Path) -> Any:
    """A TrainerCallback that logs `sample_lengths` every `settings.every` steps (to the trainer's reporters and a file)."""
    from transformers import TrainerCallback

    class LengthMonitorCallback(TrainerCallback):  # type: ignore[misc]
        trainer: Any = None

        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if not settings.every or state.global_step % settings.every or self.trainer is None:
                return
            figures = sample_lengths(model, self.trainer.processing_class, prompts, settings)
            should_log = control.should_log
            self.trainer.log(figures)  # to every reporter (TensorBoard, W&B) ...
            control.should_log = should_log  # ... without swallowing this step's own loss log
            out.mkdir(parents=True, exist_ok=True)
            with (out / LENGTHS_FILE).open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": state.global_step, **figures}) + "\n")

    return LengthMonitorCallback()


def held_out(
    examples: list[SFTExample], settings: LengthMonitor
) -> tuple[list[SFTExample], list[list[dict[str, Any]]]]:
    """The training rows, and the prompts (conversations without their last answer) the monitor samples."""
    if not settings.every:
        return examples, []
    n = min(settings.prompts, max(len(examples) - 1, 0))
    kept, held = examples[: len(examples) - n], examples[len(examples) - n :]
    return kept, [ex.messages[:-1] for ex in held]


def build_sft_trainer(recipe: SFTRecipe) -> Any:
    """The SFTTrainer of a recipe: policy, conversations (held-out prompts kept for the monitor), TRL's config."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    examples, prompts = held_out(read_sft_set(recipe.data), recipe.length_monitor)
    model, tokenizer = load_policy(recipe)
    args = trainer_config(recipe, SFTConfig, assistant_only_loss=True)
    dataset = Dataset.from_list([{"messages": ex.messages} for ex in examples])
    monitor = make_monitor(recipe.length_monitor, prompts, Path(recipe.output_dir))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[monitor])
    monitor.trainer = trainer
    return trainer


def run_sft(recipe: SFTRecipe) -> Path:
    """Train, resuming from the last checkpoint when there is one; returns the folder of the final model."""
    trainer = build_sft_trainer(recipe)
    trainer.train(resume_from_checkpoint=last_checkpoint(recipe))
    trainer.save_model(recipe.output_dir)
    trainer.processing_class.save_pretrained(recipe.output_dir)
    return Path(recipe.output_dir)
