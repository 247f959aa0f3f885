"""The `openai` engine of `LLM`: any OpenAI-compatible chat endpoint, over one or more base URLs.

vLLM, SGLang, OpenAI, Gemini's and OpenRouter's OpenAI endpoints all speak this protocol.
Each call goes to the least busy base URL. Each URL gets one HTTP pool (an `AsyncOpenAI`
client) per `POOL_CONNECTIONS` calls of the recipe's `concurrency`: httpx scans every
connection of a pool at each request and each response, so at 256 calls in flight one pool
costs the client more CPU per call than eight of 32 (`bench/scaffolds.py`, cpu ms/call).

The engine classifies failures: transient ones (429, 5xx, timeouts, dropped connections,
unreadable bodies) are raised as `Retryable` for `LLM` to retry within its bound; a
caller's error (other 4xx) fails at once with the server's message, and a context-length
error says so. The API key comes from the environment variable the model recipe names and
is masked in any error text.
"""

from __future__ import annotations

import math
import os
from typing import Any

import openai

from qednano.config import ConfigError
from qednano.llm.types import ContextLengthError, LLMError, ModelConfig, Reply, Retryable

POOL_CONNECTIONS = 32
"""Calls in flight per HTTP pool; a URL gets ceil(its share of `concurrency` / this) pools."""


class OpenAIEngine:
    """OpenAI-compatible chat completions over one or more base URLs."""

    def __init__(self, config: ModelConfig, http_client: Any = None) -> None:
        """`http_client`: an async HTTP client for the openai SDK (tests pass one with a mock transport)."""
        key = "EMPTY"
        if config.api_key_env:
            key = os.environ.get(config.api_key_env, "")
            if not key:
                raise ConfigError(
                    f"model {config.name or config.model!r}: environment variable {config.api_key_env} is not set"
                )
        share = math.ceil(config.concurrency / len(config.base_urls))
        pools = 1 if http_client is not None else math.ceil(share / POOL_CONNECTIONS)
        self.clients = [
            openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, http_client=http_client)
            for url in config.base_urls
            for _ in range(pools)
        ]
        # Servers and proxies may echo the key in an error body; error texts are logged and shown.
        self.secret = key if config.api_key_env else None
        self.busy = [0] * len(self.clients)
        self.turn = 0
        # A caller's http_client is the caller's to close; the clients' own pools are ours.
        self.owns_http = http_client is None

    async def aclose(self) -> None:
        if self.owns_http:
            for client in self.clients:
                await client.close()

    def hide(self, text: str) -> str:
        """`text` with the API key masked (an error body may echo it)."""
        return text.replace(self.secret, "[api key hidden]") if self.secret else text

    def pick(self) -> int:
        """The least busy pool, hence URL (each has as many pools); ties rotate so idle replicas share the load."""
        self.turn += 1
        n = len(self.clients)
        return min(range(n), key=lambda i: (self.busy[i], (i - self.turn) % n))

    async def send(self, request: dict[str, Any], timeout: float) -> Reply:
        i = self.pick()
        self.busy[i] += 1
        try:
            resp = await self.clients[i].chat.completions.create(**request, timeout=timeout)
        except openai.RateLimitError as err:
            raise Retryable("429", self.hide(str(err)), retry_after_seconds(err.response)) from None
        except openai.APITimeoutError as err:
            raise Retryable("timeout", self.hide(f"{self.clients[i].base_url}: {err}")) from None
        except openai.APIConnectionError as err:  # name the server: "Connection error." alone says nothing
            raise Retryable("connection", self.hide(f"cannot reach {self.clients[i].base_url}: {err}")) from None
        except openai.APIStatusError as err:
            if err.status_code >= 500 or err.status_code in (408, 409):
                kind = "5xx" if err.status_code >= 500 else str(err.status_code)
                raise Retryable(kind, self.hide(str(err))) from None
            message = self.hide(f"HTTP {err.status_code} from {self.clients[i].base_url}: {err.message}")
            if any(s in f"{message} {err.code}".lower() for s in CONTEXT_LENGTH_HINTS):
                raise ContextLengthError(message) from None
            raise LLMError(message) from None
        except (openai.APIResponseValidationError, ValueError) as err:
            raise Retryable("bad_response", self.hide(f"unreadable response: {err}")) from None
        finally:
            self.busy[i] -= 1
        if isinstance(resp, str) or not getattr(resp, "choices", None):
            raise Retryable("bad_response", "response has no choices")
        choice = resp.choices[0]
        message = choice.message
        extra = message.model_extra or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning")
        usage = resp.usage
        return Reply(
            content=message.content or "",
            reasoning=reasoning if isinstance(reasoning, str) else None,
            input_tokens=usage.prompt_tokens if usage else 0,
            output_tokens=usage.completion_tokens if usage else 0,
            finish_reason=choice.finish_reason or "",
        )


CONTEXT_LENGTH_HINTS = ("context length", "context_length", "maximum context", "too long", "context window")
"""Phrases of vLLM, SGLang and OpenAI (`context_length_exceeded`) 400s for prompts that do not fit."""


def retry_after_seconds(response: Any) -> float | None:
    if response is None:
        return None
    try:
        return float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
