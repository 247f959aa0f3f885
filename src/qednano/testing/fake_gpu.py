"""GPU-like timing for the fake server (`fake_server.py`): slots, a token rate, seeded lengths.

A real inference server decodes a bounded number of sequences at once (continuous batching)
at a roughly fixed per-sequence rate. `Decoder` models exactly that: `slots` sequences hold a
slot each for `tokens / tokens_per_s` model seconds, extra requests queue, and output lengths
come from a seeded log-normal keyed by the request (so arrival order does not change them).
`TimingReport` gives the figures a scheduling benchmark needs: busy slot-seconds, the
makespan, and the lower bound `output tokens / (slots * tokens_per_s)` no schedule can beat.
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
