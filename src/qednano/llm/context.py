"""Fitting calls into a model's context window: prompt token counts, `max_tokens` clamps, shrinking.

Where in the flow: `LLM.complete` (`llm/client.py`) clamps each call's `max_tokens` to what
its prompt leaves of the model recipe's `context_length`, and refuses (before sending) a
prompt that leaves fewer than `min_output_tokens`. Scaffolds whose inputs grow with the
proofs they read (Reasoning Cache's summary, Nomos' consolidation) ask `LLM.room()` first
and shrink their input the way their method allows (`keep_end` here).

Prompt tokens are counted with the model's tokenizer where one is at hand (the
`transformers` engine's model directory, or the recipe's `tokenizer` directory for a served
model), else estimated as `ceil(chars / 3)` plus a few tokens per message. Olympiad text
(prose, LaTeX) runs at about 3.5-4.5 characters per token with Qwen-style tokenizers, so
the estimate counts high and the clamp errs towards a smaller `max_tokens`. Should a server
still count more, vLLM's 400 says how many input tokens it saw (`server_input_tokens`) and
`LLM` clamps from that figure once more.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable
from typing import Any

from qednano.llm.types import ContextLengthError, LLMError, ModelConfig

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 3
"""The estimate's characters per token (real tokenizers give more on olympiad text)."""
MESSAGE_TOKENS = 8
"""Estimated chat-template framing per message (role markers, separators)."""
PROMPT_TOKENS = 16
"""Estimated framing per prompt (generation prompt, BOS)."""

OMITTED = "[... the beginning of this text was cut to fit the context window ...]\n\n"
"""Shown where `keep_end` cut the start of a text."""

VLLM_INPUT_TOKENS = re.compile(r"your (?:request|prompt) (?:has|contains(?: at least)?) (\d+) input tokens", re.I)
VLLM_CONTEXT = re.compile(r"maximum context length is (\d+) tokens", re.I)


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """A safe (high) token count of a chat prompt: `ceil(chars / 3)` plus framing."""
    chars = sum(len(m.get("content") or "") if isinstance(m.get("content"), str) else 0 for m in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + MESSAGE_TOKENS * len(messages) + PROMPT_TOKENS


class TokenCounter:
    """Counts a chat prompt's tokens: the model's tokenizer when there is one, else `estimate_tokens`."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.source = config.tokenizer or (config.model if config.engine == "transformers" else None)
        self._tokenizer: Any = None
        self._loaded = False
        self._lock = threading.Lock()

    @property
    def exact(self) -> bool:
        """True when counts come from a tokenizer, False when they are estimates."""
        return self.tokenizer() is not None

    def tokenizer(self) -> Any:
        with self._lock:
            if not self._loaded:
                self._loaded = True
                self._tokenizer = self._load()
            return self._tokenizer

    def _load(self) -> Any:
        if self.source is None:
            return None
        try:
            from transformers import AutoTokenizer
        except ImportError:
            if self.config.tokenizer:
                raise LLMError(
                    f"model {self.config.name or self.config.model!r}: `tokenizer` needs the 'local' extra "
                    "(pip install 'qednano[local]')"
                ) from None
            return None
        try:
            return AutoTokenizer.from_pretrained(self.source, trust_remote_code=self.config.trust_remote_code)
        except (OSError, ValueError) as err:
            if self.config.tokenizer:  # the recipe asked for it: say so rather than guess
                raise LLMError(
                    f"model {self.config.name or self.config.model!r}: field `tokenizer`: cannot load {self.source}: {err}"
                ) from None
            log.warning("%s: no tokenizer (%s); prompt tokens are estimated", self.source, err)
            return None

    def count(self, messages: list[dict[str, Any]]) -> int:
        tok = self.tokenizer()
        if tok is None:
            return estimate_tokens(messages)
        if getattr(tok, "chat_template", None):
            out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            ids = out["input_ids"] if hasattr(out, "keys") else out
            return len(ids)
        text = "\n".join(str(m.get("content") or "") for m in messages)
        return len(tok(text, add_special_tokens=True)["input_ids"]) + MESSAGE_TOKENS * len(messages)


def server_input_tokens(message: str) -> int | None:
    """The prompt tokens a vLLM-style context-length 400 reports, or None when it says none."""
    found = VLLM_INPUT_TOKENS.search(message)
    return int(found.group(1)) if found else None


def server_context_length(message: str) -> int | None:
    """The context length a vLLM-style 400 reports, or None."""
    found = VLLM_CONTEXT.search(message)
    return int(found.group(1)) if found else None


def keep_end(text: str, fits: Callable[[str], bool]) -> str:
    """The longest end of `text` (cut at a line or word break, marked with `OMITTED`) that `fits`.

    `fits(text)` must be monotone in the length of the text kept; binary search over the
    number of characters kept. Returns `""` when not even `OMITTED` alone fits.
    """
    if fits(text):
        return text
    lo, hi = 0, len(text)  # invariant: keeping `lo` chars fits (or lo == 0), keeping `hi` does not
    while hi - lo > max(1, len(text) // 2000):
        mid = (lo + hi) // 2
        if fits(cut_start(text, mid)):
            lo = mid
        else:
            hi = mid
    kept = cut_start(text, lo)
    return kept if lo > 0 and fits(kept) else ("" if not fits(OMITTED) else OMITTED)


def cut_start(text: str, keep: int) -> str:
    """The last `keep` characters of `text`, started at a line (else word) break, after `OMITTED`."""
    tail = text[len(text) - keep :]
    for sep in ("\n", " "):
        at = tail.find(sep)
        if 0 <= at < min(len(tail), 2000):
            tail = tail[at + 1 :]
            break
    return OMITTED + tail


class ContextWindow:
    """A model's context window: `room()` for scaffolds, `fit()` and `refit()` for `LLM`."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.counter = TokenCounter(config)

    @property
    def how(self) -> str:
        return "counted" if self.counter.exact else "estimated"

    def room(self, messages: list[dict[str, Any]]) -> int | None:
        """Output tokens the window leaves after these messages; None when the recipe sets no `context_length`."""
        if self.config.context_length is None:
            return None
        return self.config.context_length - self.counter.count(messages)

    def need(self, asked: int | None) -> int:
        """The fewest output tokens a call asking for `asked` is sent with."""
        floor = self.config.min_output_tokens
        return min(asked, floor) if asked else floor

    def fits(self, messages: list[dict[str, Any]], asked: int | None = None) -> bool:
        """True when the messages leave at least `need(asked)` output tokens (always, without a window)."""
        room = self.room(messages)
        return room is None or room >= self.need(asked if asked is not None else self.config.max_tokens)

    def fit(self, request: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The request with `max_tokens` clamped to the room its prompt leaves, and a note when clamped.

        Raises `ContextLengthError` (before anything is sent) when the room is below `need`.
        """
        c = self.config
        if c.context_length is None:
            return request, []
        prompt = self.counter.count(request["messages"])
        room = c.context_length - prompt
        param = c.max_tokens_param
        asked = request.get(param)
        if room < self.need(asked):
            raise ContextLengthError(
                f"{c.name or c.model}: the prompt ({prompt} tokens, {self.how}) leaves {room} of the "
                f"{c.context_length}-token context window (context_length); at least {self.need(asked)} "
                "output tokens are needed (min_output_tokens)"
            )
        if asked is not None and asked > room:
            note = f"max_tokens {asked} -> {room}: prompt of {prompt} tokens ({self.how}), window {c.context_length}"
            return {**request, param: room}, [note]
        return request, []

    def refit(self, request: dict[str, Any], message: str) -> tuple[dict[str, Any], str] | None:
        """After a server's context-length refusal: the request clamped to the server's own count, or None.

        vLLM's 400 names the prompt's input tokens and the window; without both (or when the
        clamp would not help) there is nothing to retry.
        """
        c = self.config
        seen = server_input_tokens(message)
        limit = server_context_length(message) or c.context_length
        param = c.max_tokens_param
        asked = request.get(param)
        if seen is None or limit is None or asked is None:
            return None
        room = limit - seen
        if room >= asked or room < self.need(asked):
            return None
        return {
            **request,
            param: room,
        }, f"max_tokens {asked} -> {room}: the server counted {seen} prompt tokens of {limit}"
