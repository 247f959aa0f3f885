"""The three records that flow one way through every stage: Problem -> Attempt -> Grade.

A `Completion` is one model call; an `Attempt` carries the transcript of every call its
scaffold made. All records are frozen pydantic models that round-trip through JSON, and
every id is deterministic (content hashes or positions, never Python's salted `hash()`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    """Base of all records: frozen, strict about unknown fields, JSON round-trip."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def content_id(*parts: Any, length: int = 12) -> str:
    """A short deterministic id: sha256 of the canonical JSON of `parts`."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


class Problem(Record):
    """One problem to solve: a proof problem (graded with a rubric) or a final-answer problem."""

    id: str
    """Stable id: the benchmark's own id, or `content_id(statement)` for scraped data."""
    statement: str
    """The problem text, as shown to the model."""
    solution: str = ""
    """A reference solution (may be empty)."""
    rubric: str = ""
    """Marking scheme as text (checkpoints summing to `max_points`); empty if none."""
    answer: str = ""
    """The final answer for answer-checked problems; empty for proof problems."""
    max_points: int = 7
    """Full marks."""
    source: str = ""
    """Where the problem comes from (benchmark or dataset name)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Free-form facts: year, competition, category, difficulty, subset, ..."""


class Completion(Record):
    """One model call, as recorded in an Attempt's or a Grade's transcript."""

    step: str
    """The scaffold step that made the call (e.g. `solve`, `summarize/1`, `verify/2.3`)."""
    model: str
    """Model id as sent to the engine."""
    messages: list[dict[str, Any]]
    """The chat messages sent."""
    text: str
    """The final text, with any reasoning removed."""
    reasoning: str = ""
    """The reasoning text (server `reasoning_content`, or what came before the delimiter)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    """USD, from the model recipe's prices."""
    seconds: float = 0.0
    """Wall time of the call that produced this completion (0 when replayed from cache)."""
    finish_reason: str = ""
    """The engine's finish reason (`stop`, `length`, ...)."""
    truncated: bool = False
    """True when the output was cut off: `length`, or reasoning that never closed."""
    cached: bool = False
    """True when this completion was replayed from the call cache, not sent."""
    notes: list[str] = Field(default_factory=list)
    """What was changed to fit the model's context window: `max_tokens` clamped, an input
    shrunk by the scaffold (`context: ...`); empty when the call went as asked."""


class Attempt(Record):
    """One scaffold run on one problem: the proof and every call that produced it."""

    id: str
    """`{problem_id}/{sample}`."""
    problem_id: str
    sample: int
    """Index of this sample among the samples of the problem (0-based)."""
    scaffold: str
    """Name of the scaffold that produced the proof."""
    proof: str
    """The final text to grade (reasoning removed)."""
    transcript: list[Completion] = Field(default_factory=list)
    human_points: float | None = None
    """Points given by a human grader, for grader meta-evaluation; None when unknown."""
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def input_tokens(self) -> int:
        return sum(c.input_tokens for c in self.transcript)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.transcript)

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.transcript)

    @property
    def truncated(self) -> bool:
        """True when the call that produced the proof was cut off.

        That call is the latest one whose final text is the proof: in a scaffold whose calls
        finish concurrently, or end with a selection step, it need not be the last call.
        The proof may also be a section of that call's text (DSM extracts its `## Solution`):
        with no call whose text is the proof, the latest call whose text contains it counts.
        """
        calls = list(reversed(self.transcript))
        source = next((c for c in calls if c.text == self.proof), None)
        if source is None and self.proof:
            source = next((c for c in calls if self.proof in c.text), None)
        return source is not None and source.truncated

    @property
    def context_notes(self) -> list[str]:
        """Every call's notes on fitting the context window (clamped `max_tokens`, shrunk inputs)."""
        return [f"{c.step}: {n}" for c in self.transcript for n in c.notes]

    @staticmethod
    def make_id(problem_id: str, sample: int) -> str:
        return f"{problem_id}/{sample}"


class Grade(Record):
    """A judge's verdict on one Attempt. `points=None` means ungraded, never zero."""

    attempt_id: str
    problem_id: str
    judge: str
    """Name of the judge configuration that produced this grade."""
    points: float | None
    """Points awarded in [0, max_points]; None when the judge gave no usable verdict."""
    max_points: int = 7
    explanation: str = ""
    """The judge's text (or the reason there is no verdict)."""
    flags: list[str] = Field(default_factory=list)
    """Anomalies seen while grading, e.g. `prompt_injection`, `truncated`."""
    transcript: list[Completion] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def score(self) -> float | None:
        """Points as a fraction of max_points (None when ungraded)."""
        return None if self.points is None else self.points / self.max_points
