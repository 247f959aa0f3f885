"""Fake engines for the judge tests: the real `LLM` class runs over them (`LLM(config, engine=...)`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qednano.llm.client import LLM
from qednano.llm.types import ModelConfig, Reply


def reply(text: str, finish_reason: str = "stop") -> Reply:
    return Reply(content=text, reasoning=None, input_tokens=10, output_tokens=5, finish_reason=finish_reason)


class Scripted:
    """Answers each request with the next item of a script; a callable item is called with the request."""

    def __init__(self, *items: str | Reply | Exception | Callable[[dict[str, Any]], str]) -> None:
        self.items = list(items)
        self.requests: list[dict[str, Any]] = []

    async def send(self, request: dict[str, Any], timeout: float) -> Reply:
        self.requests.append(request)
        item = self.items.pop(0) if len(self.items) > 1 else self.items[0]
        if isinstance(item, Exception):
            raise item
        if callable(item):
            item = item(request)
        return item if isinstance(item, Reply) else reply(item)


def prompt_of(request: dict[str, Any]) -> str:
    """Every message of the request, joined: what an echoing judge repeats."""
    return "\n".join(str(m["content"]) for m in request["messages"])


def echo(suffix: str = "") -> Scripted:
    """A judge that repeats its whole input (then `suffix`), like a model that parrots the prompt."""
    return Scripted(lambda request: prompt_of(request) + suffix)


def make_llm(engine: Any, **config: Any) -> LLM:
    settings = {"model": "fake-judge", "max_retries": 0, "backoff_s": 0, **config}
    return LLM(ModelConfig(**settings), engine=engine)
