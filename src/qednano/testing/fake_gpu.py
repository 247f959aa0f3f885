"""GPU-like timing for the fake server (`fake_server.py`): slots, a token rate, seeded lengths.

A real inference server decodes a bounded number of sequences at once (continuous batching)
at a roughly fixed per-sequence rate. `Decoder` models exactly that: `slots` sequences hold a
slot each for `tokens / tokens_per_s` model seconds, extra requests queue, and output lengths
come from a seeded log-normal keyed by the request (so arrival order does not change them).
`TimingReport` gives the figures a scheduling benchmark needs: busy slot-seconds, the
makespan, and the lower bound `output tokens / (slots * tokens_per_s)` no schedule can beat.

A real server also has a context window and writes texts as long as their token counts:
`context_refusal()` is vLLM's 400 message for a request that does not fit, and `filled()`
makes a reply's text of a drawn length (filler reasoning in `<think>`, then a filler proof),
cut off at the request's cap as a real decode is.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """A GPU-like decoder: `slots` sequences at once, each at `tokens_per_s`."""

    slots: int = 8
    tokens_per_s: float = 100.0
    """Decode rate of one sequence, in model tokens per (model) second."""
    mean_tokens: float = 500.0
    """Mean of the log-normal output length (when the script does not fix the count)."""
    sigma: float = 0.6
    """Shape of the log-normal; 0 gives every reply `mean_tokens`."""
    min_tokens: int = 1
    time_scale: float = 1.0
    """Wall seconds per model second: 0.01 runs a 100 s schedule in 1 s."""


@dataclass(frozen=True)
class TimingReport:
    """What the decoder did, in model seconds (wall seconds / time_scale)."""

    slots: int
    tokens_per_s: float
    sequences: int
    output_tokens: int
    busy_s: float
    """Sum over sequences of their decode time (slot-seconds)."""
    makespan_s: float
    """From the first decode start to the last decode end."""
    lower_bound_s: float
    """`output_tokens / (slots * tokens_per_s)`: no schedule finishes sooner."""
    utilization: float
    """`busy_s / (slots * makespan_s)`."""
    peak_active: int
    peak_queued: int


class Decoder:
    """The timing mode: `slots` sequences decode at once at a fixed rate; the rest queue."""

    def __init__(self, timing: Timing, seed: int) -> None:
        self.timing = timing
        self.seed = seed
        self.slots = asyncio.Semaphore(timing.slots)  # binds to the server's loop on first wait
        self.seen: Counter[str] = Counter()
        self.sequences = self.tokens = self.active = self.queued = self.peak_active = self.peak_queued = 0
        self.busy = 0.0
        self.first_start: float | None = None
        self.last_end: float | None = None

    def sample(self, request: dict[str, Any]) -> int:
        """A seeded output length that depends on the request and its repeat, not on arrival order."""
        t = self.timing
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        self.seen[digest] += 1
        rng = random.Random(f"{self.seed}:{digest}:{self.seen[digest]}")
        mu = math.log(t.mean_tokens) - t.sigma**2 / 2
        return max(t.min_tokens, round(rng.lognormvariate(mu, t.sigma)))

    async def decode(self, tokens: int) -> None:
        """Hold one slot for `tokens / tokens_per_s` model seconds."""
        self.queued += 1
        self.peak_queued = max(self.peak_queued, self.queued)
        async with self.slots:
            self.queued -= 1
            self.active += 1
            self.peak_active = max(self.peak_active, self.active)
            if self.first_start is None:
                self.first_start = time.monotonic()
            seconds = tokens / self.timing.tokens_per_s
            try:
                await asyncio.sleep(seconds * self.timing.time_scale)
            finally:
                self.active -= 1
            self.sequences += 1
            self.tokens += tokens
            self.busy += seconds
            self.last_end = time.monotonic()

    def report(self) -> TimingReport:
        t = self.timing
        makespan = 0.0
        if self.first_start is not None and self.last_end is not None:
            makespan = (self.last_end - self.first_start) / t.time_scale
        return TimingReport(
            slots=t.slots,
            tokens_per_s=t.tokens_per_s,
            sequences=self.sequences,
            output_tokens=self.tokens,
            busy_s=self.busy,
            makespan_s=makespan,
            lower_bound_s=self.tokens / (t.slots * t.tokens_per_s),
            utilization=self.busy / (t.slots * makespan) if makespan else 0.0,
            peak_active=self.peak_active,
            peak_queued=self.peak_queued,
        )


FILLER = [
    "so",
    "we",
    "get",
    "that",
    "the",
    "sum",
    "is",
    "at",
    "most",
    "one",
    "and",
    "hence",
    "each",
    "term",
    "of",
    "it",
    "must",
    "be",
    "even",
]
"""Words of the filler text (`fill=`): each counts as one token here and spans 2-6 characters."""


def filler(words: int, offset: int = 0) -> str:
    """`words` filler words (one token each by the fake server's word count)."""
    return " ".join(FILLER[(offset + i) % len(FILLER)] for i in range(words))


def filled(content: str, tokens: int, share: float, cap: int | None) -> tuple[str, int, bool]:
    """(content, tokens, cut off): `<think>` filler, `</think>`, filler proof, then `content`, at most `cap` tokens.

    The reasoning takes `1 - share` of the drawn `tokens`; `<think>`, `</think>` and every
    word are one token each. Only the words before the cap are made.
    """
    tail = content.split()
    proof = max(0, round(tokens * share) - len(tail))
    think = max(1, tokens - proof - len(tail) - 2)
    total = think + proof + len(tail) + 2
    left = total if cap is None else min(cap, total)
    words: list[str] = []
    for segment, size in (("<think>", 1), ("think", think), ("</think>", 1), ("proof", proof), ("tail", len(tail))):
        n = min(size, left - len(words))
        if n <= 0:
            break
        if segment in ("<think>", "</think>"):
            words.append(segment)
        elif segment == "tail":
            words += tail[:n]
        else:
            words += filler(n, 0 if segment == "think" else 7).split()
    cut = len(words) < total
    text = " ".join(words)
    if not cut and tail:  # the script's own content after a blank line, as written
        text = text[: len(text) - len(" ".join(tail))].rstrip() + "\n\n" + content
    return text, len(words), cut


def context_refusal(window: int, prompt: int, asked: Any) -> str | None:
    """vLLM's message refusing a request of `prompt` tokens asking `asked` new tokens, or None when it fits."""
    if prompt >= window:
        return (
            f"This model's maximum context length is {window} tokens. However, your request has "
            f"{prompt} input tokens. Please reduce the length of the input messages."
        )
    if isinstance(asked, int) and prompt + asked > window:
        return (
            f"'max_tokens' or 'max_completion_tokens' is too large: {asked}. This model's maximum context "
            f"length is {window} tokens and your request has {prompt} input tokens ({asked} > {window} - {prompt})."
        )
    return None
