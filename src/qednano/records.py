"""The three records that flow one way through every stage: Problem -> Attempt -> Grade.

A `Completion` is one model call; an `Attempt` carries the transcript of every call its
scaffold made. All records are frozen pydantic models that round-trip through JSON, and
every id is deterministic (content hashes or positions, never Python's salted `hash()`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)


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


SHARED_MIN = 256
"""Shortest earlier text a stored message refers to instead of repeating it."""


def shared_parts(content: str, earlier: list[tuple[int, str]]) -> list[str | int] | None:
    """`content` as text pieces and indices of the `earlier` (index, text) pairs it holds; None when it holds none."""
    parts: list[str | int] = [content]
    for index, text in sorted(earlier, key=lambda e: -len(e[1])):  # the longest first: a text may hold a shorter one
        split: list[str | int] = []
        for part in parts:
            if isinstance(part, str) and text in part:
                pieces = part.split(text)
                split += [x for piece in pieces[:-1] for x in (piece, index)] + [pieces[-1]]
            else:
                split.append(part)
        parts = split
    return [p for p in parts if p != ""] if len(parts) > 1 else None


def store_repeats_once(transcript: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A transcript as stored: a message that holds the text of earlier calls (the candidates RSA aggregates, a
    draft to refine) keeps `content_parts`, its text pieces and the index of each such call, instead of `content`."""
    out = []
    for i, call in enumerate(transcript):
        earlier = [(j, c["text"]) for j, c in enumerate(transcript[:i]) if len(c["text"]) >= SHARED_MIN]
        messages = []
        for message in call["messages"]:
            content = message.get("content")
            parts = shared_parts(content, earlier) if earlier and isinstance(content, str) else None
            if parts is not None:
                message = {**{k: v for k, v in message.items() if k != "content"}, "content_parts": parts}
            messages.append(message)
        out.append({**call, "messages": messages})
    return out


def whole_messages(transcript: list[Any]) -> list[Any]:
    """The inverse of `store_repeats_once`: every `content_parts` joined back into `content`."""
    out: list[Any] = []
    for i, call in enumerate(transcript):
        if isinstance(call, dict) and any(
            isinstance(m, dict) and "content_parts" in m for m in call.get("messages", [])
        ):
            messages = []
            for k, message in enumerate(call["messages"]):
                if isinstance(message, dict) and "content_parts" in message:
                    where = f"transcript[{i}].messages[{k}].content_parts"
                    if "content" in message:
                        raise ValueError(f"{where}: a message has content or content_parts, not both")
                    pieces = []
                    for part in message["content_parts"]:
                        if (
                            type(part) is int
                            and 0 <= part < i
                            and isinstance(out[part], dict)
                            and isinstance(out[part].get("text"), str)
                        ):
                            pieces.append(out[part]["text"])
                        elif isinstance(part, str):
                            pieces.append(part)
                        else:
                            raise ValueError(f"{where}: {part!r} is neither text nor the index of an earlier call")
                    rest = {key: v for key, v in message.items() if key != "content_parts"}
                    message = {**rest, "content": "".join(pieces)}
                messages.append(message)
            call = {**call, "messages": messages}
        out.append(call)
    return out


class Attempt(Record):
    """One scaffold run on one problem: the proof and every call that produced it.

    As JSON (what the run store writes), a message that repeats the text of an earlier call of
    the transcript refers to that call instead (`store_repeats_once`): RSA's aggregation prompts
    hold whole candidates. Reading the JSON joins them back; `model_dump()` gives whole messages.
    """

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

    @model_validator(mode="before")
    @classmethod
    def _whole_messages(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("transcript"), list):
            return {**data, "transcript": whole_messages(data["transcript"])}
        return data

    @model_serializer(mode="wrap")
    def _repeats_once(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        data = handler(self)
        if info.mode_is_json() and isinstance(data, dict) and data.get("transcript"):
            data["transcript"] = store_repeats_once(data["transcript"])
        return data

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
