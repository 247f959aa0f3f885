"""Training recipes for `qednano sft`, `grpo` and `rc`: the model, the data, and TRL's own config block.

The `trainer:` mapping is passed straight to TRL's `SFTConfig` / `GRPOConfig`, so TRL
validates it and TRL's documentation stays the reference; the fields here are the ones TRL
has no place for (the judge, the reasoning cache, the length monitor, resume).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from qednano.config import Strict
from qednano.grading.judge import JudgeConfig, ProofJudge
from qednano.llm.types import ModelConfig


class TrainingData(Strict):
    """Where a training set comes from: a local file or `datasets` folder, else a hub dataset."""

    path: str | None = None
    """JSONL, parquet or CSV file, or a `save_to_disk` folder (what `qednano export` writes)."""
    hub: str | None = None
    """A hub dataset id, e.g. `lm-provers/FineProofs-RL`; used when `path` is not given."""
    split: str = "train"
    revision: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    """Our field -> the dataset's column, for sets in another layout (FineProofs-RL: `problem: task`, `rubric: schema`)."""
    limit: int | None = Field(None, ge=1)
    """Use only the first `limit` rows (smoke runs)."""


class FreshModel(Strict):
    """A model trained from scratch: built at the recipe's `model` folder when that folder has none yet."""

    kind: Literal["builtin-prover"] = "builtin-prover"
    """The built-in domain's prover: a word-level tokenizer trained on the domain's text and a Qwen3 (`builtin/prover.py`)."""
    hidden: int = Field(128, ge=8)
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    seed: int = 0


class TrainRecipe(Strict):
    """What every training command shares."""

    model: str
    """The starting checkpoint: a hub id or a local folder (safetensors only)."""
    init: FreshModel | None = None
    """Build a fresh model at `model` first, when that folder holds none (training from scratch)."""
    tokenizer: str | None = None
    """Where the tokenizer lives, when not beside the model."""
    output_dir: str
    """Checkpoints, logs and the final model; re-running the recipe resumes from the last checkpoint."""
    data: TrainingData
    trainer: dict[str, Any] = Field(default_factory=dict)
    """Passed to TRL's config class as keyword arguments (learning_rate, per_device_train_batch_size, report_to, ...)."""
    model_init: dict[str, Any] = Field(default_factory=dict)
    """Passed to `from_pretrained` (dtype, attn_implementation); FlashAttention 2 is chosen on a GPU where installed."""
    trust_remote_code: bool = False
    resume: bool = True
    """Continue from the newest `checkpoint-*` in `output_dir` when there is one."""


class LengthMonitor(Strict):
    """Every `every` steps, sample held-out prompts and log the mean completion length and the share cut off."""

    every: int = Field(0, ge=0)
    """Steps between samples; 0 turns the monitor off."""
    prompts: int = Field(8, ge=1)
    """Held-out conversations (taken from the end of the set, not trained on)."""
    max_new_tokens: int = Field(1024, ge=1)
    temperature: float = Field(0.8, ge=0)


class SFTRecipe(TrainRecipe):
    """`qednano sft RECIPE`: TRL's SFTTrainer on a conversations set (`data/schema.py` SFTExample rows)."""

    length_monitor: LengthMonitor = Field(default_factory=lambda: LengthMonitor.model_validate({}))


class RewardSettings(Strict):
    """How a completion becomes a reward: the judge's points over full marks."""

    judge: JudgeConfig = Field(
        default_factory=lambda: ProofJudge.model_validate({"style": "qed_nano_train", "reference": False})
    )
    """The same judge classes that grade benchmarks (the paper's training judge: strict, no reference)."""
    reasoning_delimiter: str = "</think>"
    """The text after the last delimiter is the proof the judge sees; a completion without it never finished thinking."""
    truncation_reward: float = 0.0
    """Reward of a completion that never closes its reasoning (no judge call)."""


class JudgeModels(Strict):
    judge: ModelConfig
    """The judge endpoint (an OpenAI-compatible server, e.g. gpt-oss-20b on vLLM)."""


class GRPORecipe(TrainRecipe):
    """`qednano grpo RECIPE`: TRL's GRPOTrainer on an RL set (RLProblem rows), rewarded by the judge."""

    models: JudgeModels
    reward: RewardSettings = Field(default_factory=lambda: RewardSettings.model_validate({}))
    prompt: str = "proof"
    """The prompt template (under `prompts/`) that turns a problem into the policy's user turn."""
    loss: Literal["trl", "qed-nano"] = "trl"
    """`trl`: the `loss_type` in `trainer:`. `qed-nano`: the original's token sum over a constant
    1/samples-per-step normaliser, with the entropy bonus inside the sum (see `grpo.py`)."""


class RCSettings(Strict):
    """Reasoning-Cache rollouts: states from k summarise-and-refine turns, a group of completions per state."""

    turns: int = Field(3, ge=1)
    """Reasoning turns of the state-building trajectory (states: the empty summary and summaries 1..turns)."""
    states_per_problem: int = Field(2, ge=1)
    """Groups per problem: each problem's row appears this many times in the set, each row draws its own state."""
    turn_max_tokens: int | None = Field(None, ge=1)
    """Most tokens of one state-building reasoning turn (default: the trainer's max_completion_length)."""
    solve_prompt: str = "rc_solve"
    summarize_prompt: str = "rc_summarize"
    no_summary: str = ""
    """The summary text of the first state (the original's RC actor uses the empty string)."""


class RCModels(JudgeModels):
    summarizer: ModelConfig
    """The frozen summariser (its own endpoint; never trained)."""


class RCRecipe(GRPORecipe):
    """`qednano rc RECIPE`: GRPO over Reasoning-Cache states, through TRL's `rollout_func`."""

    models: RCModels  # type: ignore[assignment]
    rc: RCSettings = Field(default_factory=lambda: RCSettings.model_validate({}))
