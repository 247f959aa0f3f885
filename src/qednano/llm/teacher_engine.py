"""The `builtin-teacher` engine: the built-in domain's teacher (`builtin/teacher.py`) behind the Engine protocol.

The DATA flow's teacher for built-in problems, offline: a model recipe with
`engine: builtin-teacher` gets its replies from `teacher.answer()` instead of a server, so
they pass through the `LLM` class (call cache, retries, token and cost accounting,
reasoning split) like any model's. Its settings ride in the recipe's `extra_body`
(passed in every request): `error_rate` (0..1), `errors` (a list of the teacher's error
kinds) and `think` (a search trace before `</think>`). A token is a whitespace-separated
word or a newline (the built-in text is written that way); `max_tokens` cuts the reply
there with finish reason `length`, as a server would. Each reply is seeded by the recipe's
`seed`, the request and how many identical requests came before, so the samples of one
problem differ and a run is reproducible.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from typing import Any

from qednano.builtin.teacher import ERRORS, answer
from qednano.llm.types import LLMError, ModelConfig, Reply
from qednano.records import content_id

TOKEN = re.compile(r"[^\s]+|\n")


def count_tokens(text: str) -> int:
    return len(TOKEN.findall(text))


def cut(text: str, max_tokens: int) -> tuple[str, bool]:
    """The first `max_tokens` tokens of `text`, and whether anything was cut."""
    for n, m in enumerate(TOKEN.finditer(text), start=1):
        if n == max_tokens:
            return text[: m.end()], m.end() < len(text.rstrip())
    return text, False


class TeacherEngine:
    """Answers chat requests with the built-in teacher, in-process."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.seen: Counter[str] = Counter()
        self.mistakes: Counter[str] = Counter()
        """Mistakes made so far by kind (for tests and logs; the grades show them too)."""

    async def send(self, request: dict[str, Any], timeout: float) -> Reply:
        settings = dict(request.get("extra_body") or {})
        error_rate = settings.pop("error_rate", 0.0)
        errors = settings.pop("errors", list(ERRORS))
        think = settings.pop("think", False)
        if settings or not isinstance(error_rate, int | float) or not 0 <= error_rate <= 1:
            raise LLMError(
                f"builtin-teacher: extra_body takes error_rate (0..1), errors, think; got {request.get('extra_body')}"
            )
        unknown = [e for e in errors if e not in ERRORS]
        if unknown:
            raise LLMError(f"builtin-teacher: unknown errors {unknown} (known: {', '.join(ERRORS)})")
        messages = request.get("messages") or []
        prompt = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        digest = content_id(self.config.seed, json.dumps(request, sort_keys=True, default=str))
        rng = random.Random(f"{digest}:{self.seen[digest]}")
        self.seen[digest] += 1
        text, made = answer(prompt, rng, error_rate=float(error_rate), errors=tuple(errors), think=bool(think))
        if made:
            self.mistakes[made] += 1
        limit = request.get("max_tokens") or request.get("max_completion_tokens")
        finish = "stop"
        if limit:
            text, was_cut = cut(text, int(limit))
            finish = "length" if was_cut else "stop"
        tokens_in = sum(count_tokens(str(m.get("content", ""))) for m in messages)
        return Reply(text, None, tokens_in, count_tokens(text), finish)
