"""What the `LLM` and its engines share: the model recipe, the errors, an engine's reply.

Both `client.py` (the `LLM`) and the engines (`openai_engine.py`, `local_engine.py`) import
these; this module imports neither, so there is no import circle between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from pydantic import Field

from qednano.config import Strict


class ModelConfig(Strict):
    """One model endpoint, as written in `recipes/models/<name>.yaml` or inline."""

    name: str = ""
    """Human-readable name (the recipe file's stem when referenced by name)."""
    engine: Literal["openai", "transformers", "builtin-teacher"] = "openai"
    """`openai` (any OpenAI-compatible server), `transformers` (in-process), or `builtin-teacher`
    (the built-in domain's offline teacher; its settings ride in `extra_body`)."""
    model: str
    """Model id sent to the server, or the local model directory for `transformers`."""
    base_urls: list[str] = Field(default_factory=lambda: ["http://localhost:8000/v1"])
    """OpenAI-compatible endpoints; requests go to the least busy one."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (never the key itself)."""
    concurrency: int = Field(16, ge=1)
    """Most calls in flight at once, over all base URLs."""
    max_retries: int = Field(4, ge=0)
    """Retries after the first try, for 429, 5xx, timeouts, dropped connections, bad bodies."""
    backoff_s: float = Field(1.0, ge=0)
    """First backoff; doubles on each retry, with jitter, capped at `max_backoff_s`."""
    max_backoff_s: float = Field(60.0, ge=0)
    timeout_s: float = Field(3600.0, gt=0)
    """Per-call timeout in seconds."""
    max_tokens: int | None = None
    """Most output tokens per call; clamped per call to what the prompt leaves of `context_length`."""
    context_length: int | None = Field(None, ge=1)
    """The server's context window in tokens (vLLM `--max-model-len`): prompt + `max_tokens` must fit.
    None: no clamp (the server's own limit applies)."""
    min_output_tokens: int = Field(1024, ge=1)
    """With `context_length`: a prompt that leaves fewer output tokens is refused before it is sent
    (`ContextLengthError`); scaffolds that can shrink their input do so first."""
    tokenizer: str | None = None
    """Local tokenizer directory (Hugging Face layout) to count prompt tokens for `context_length`;
    the `transformers` engine uses its model's own. None: a safe estimate (`llm/context.py`)."""
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    """OpenAI reasoning models want `max_completion_tokens`."""
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    """Sampling seed. Each call is sent its own seed, derived from this one and the call's scope
    (attempt, step, repeat), so identical parallel requests still sample differently."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Passed through to the server (vLLM `top_k`, `chat_template_kwargs`, `reasoning_effort`)."""
    price_input: float = 0.0
    """USD per million input tokens."""
    price_output: float = 0.0
    """USD per million output tokens."""
    reasoning_delimiter: str | None = None
    """Split reasoning from the final text at the last occurrence of this string (e.g.
    `</think>`) when the server does not return `reasoning_content`. Output that never
    contains it is all reasoning: the final text is empty and the call is truncated."""
    trust_remote_code: bool = False
    """`transformers` engine only: run code shipped with the model. Off unless a recipe says so."""
    device: str = "auto"
    """`transformers` engine only: `cpu`, `cuda`, or `auto`."""
    max_batch: int = Field(8, ge=1)
    """`transformers` engine only: most requests decoded together in one batch."""


class LLMError(RuntimeError):
    """A call that failed for good (after its retries, or at once for the caller's fault)."""


class ContextLengthError(LLMError):
    """The prompt plus `max_tokens` does not fit the model's context window."""


class BudgetExhausted(LLMError):
    """The attempt's token budget is spent; scaffolds stop cleanly on it."""


class Retryable(Exception):
    """A transient failure worth another try (raised by engines)."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


@dataclass
class Reply:
    """What an engine returns for one request, before reasoning splitting and costing."""

    content: str
    reasoning: str | None
    input_tokens: int
    output_tokens: int
    finish_reason: str


class Engine(Protocol):
    async def send(self, request: dict[str, Any], timeout: float) -> Reply: ...
