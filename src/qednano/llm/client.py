"""`LLM`, the one model interface: policy, judge, summarizer, rubric writer and data filters.

Concurrency, bounded retries with backoff, per-call timeouts, the call cache, reasoning
splitting, and token and cost accounting live here and nowhere else. Two engines:

- `openai`: any OpenAI-compatible chat endpoint (vLLM, SGLang, OpenAI, Gemini, OpenRouter)
  through the official async client, requests spread over one or more base URLs
  (`llm/openai_engine.py`);
- `transformers`: a local model directory run in-process (`llm/local_engine.py`), concurrent
  requests batched together.

Scaffolds call `await llm.complete(messages, step=...)`. The attempt a call belongs to comes
from `attempt_scope()`, a context variable set by the pipeline, so scaffolds stay pure:
the scope keys the call cache, collects the transcript and enforces a token budget.

What is sent differs from the request the cache keys on in two ways: a recipe `seed` becomes
a per-call seed (`call_seed`: sha256 of the seed, the scope and the repeat), and `max_tokens`
is clamped to what the prompt leaves of the recipe's `context_length` (`llm/context.py`;
once more from the server's own count when vLLM refuses a prompt as too long).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import hashlib
import heapq
import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import Field

from qednano.config import Strict
from qednano.llm.cache import CallCache, call_key, request_digest
from qednano.llm.context import ContextWindow
from qednano.llm.types import BudgetExhausted, ContextLengthError, Engine, LLMError, ModelConfig, Reply, Retryable
from qednano.records import Completion

log = logging.getLogger(__name__)


@dataclass
class CallStats:
    """Counters over the life of one LLM: what was sent, replayed, retried and failed."""

    sent: int = 0
    cached: int = 0
    retries: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    """Transient failures seen, by kind (`429`, `5xx`, `timeout`, `connection`, `bad_response`)."""


class CallTally(Strict):
    """One line of a run's `call_stats.jsonl`: one model's `CallStats` over one pass of a stage.

    A pass writes its lines when it ends (a SIGKILLed pass writes none); the report sums them,
    so faults, retries and failed calls are counted over every pass of a run.
    """

    stage: str
    model: str
    max_retries: int
    """The model's retry bound in that pass: `retries <= max_retries * (sent + failures)`."""
    sent: int = 0
    cached: int = 0
    retries: int = 0
    failures: int = 0
    faults: dict[str, int] = Field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0


# ---------------------------------------------------------------------------- attempt scope


@dataclass
class AttemptScope:
    """The attempt the current calls belong to: cache scope, transcript, token budget."""

    id: str
    token_budget: int | None = None
    budget_counts: str = "total"
    """What the token budget counts: `total` (input + output tokens of every call) or `output`."""
    completions: list[Completion] = field(default_factory=list)
    repeats: Counter[str] = field(default_factory=Counter)

    @property
    def tokens(self) -> int:
        """Tokens spent so far, as the budget counts them."""
        if self.budget_counts == "output":
            return sum(c.output_tokens for c in self.completions)
        return sum(c.input_tokens + c.output_tokens for c in self.completions)


_scope: contextvars.ContextVar[AttemptScope | None] = contextvars.ContextVar("qednano_scope", default=None)


@contextlib.contextmanager
def attempt_scope(
    attempt_id: str, token_budget: int | None = None, budget_counts: str = "total"
) -> Iterator[AttemptScope]:
    """Attribute every call made inside (in this task and tasks it starts) to one attempt.

    `budget_counts`: `total` (the budget counts input and output tokens) or `output`.
    """
    if budget_counts not in ("total", "output"):
        raise ValueError(f"budget_counts must be 'total' or 'output', not {budget_counts!r}")
    scope = AttemptScope(attempt_id, token_budget, budget_counts)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current_scope() -> AttemptScope | None:
    return _scope.get()


def call_seed(seed: int, scope_key: str, repeat: int) -> int:
    """The seed sent with one call: sha256 of the recipe seed, the call's scope and its repeat (31 bits)."""
    digest = hashlib.sha256(f"{seed}:{scope_key}:{repeat}".encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


# ---------------------------------------------------------------------------- reasoning


def split_reasoning(content: str, reasoning: str | None, delimiter: str | None) -> tuple[str, str, bool]:
    """(final text, reasoning, unclosed): the server's reasoning field wins, else the delimiter."""
    if reasoning:
        return content.strip(), reasoning.strip(), False
    if not delimiter:
        return content.strip(), "", False
    head, found, tail = content.rpartition(delimiter)
    if not found:
        return "", content.removeprefix("<think>").strip(), True
    return tail.strip(), head.removeprefix("<think>").strip(), False


# ---------------------------------------------------------------------------- LLM


class Gate:
    """At most `limit` calls in flight, shared by an LLM and its `with_cache` twins.

    When calls wait, the one whose attempt has finished the fewest calls goes first (ties
    in arrival order). An attempt that is behind has the most dependent calls still ahead,
    so serving it first shortens the longest chain, which sets when a run ends.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        """Hold one of the `limit` slots; lower `priority` values are served first."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (a later asyncio.run): start afresh
            self._loop, self._active, self._waiting = loop, 0, []
        if self._active < self.limit and not self._waiting:
            self._active += 1
        else:
            turn: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._waiting, (priority, next(self._arrivals), turn))
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._release()  # granted, then cancelled: pass the slot on
                raise
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _, _, turn = heapq.heappop(self._waiting)
            if not turn.done():
                turn.set_result(None)  # the slot passes straight to the next waiter
                return
        self._active -= 1


class LLM:
    """One model endpoint with concurrency, retries, timeouts, the call cache and accounting."""

    def __init__(
        self,
        config: ModelConfig,
        cache: CallCache | None = None,
        *,
        engine: Engine | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.config = config
        self.cache = cache
        self.stats = CallStats()
        self.engine = engine or self._make_engine(http_client)
        self.gate = Gate(config.concurrency)
        self.context = ContextWindow(config)
        # Repeat counter for calls made outside any attempt scope, so that identical
        # unscoped calls (data filters, ad-hoc sampling) are not all replayed as one.
        self._unscoped_repeats: Counter[str] = Counter()

    @property
    def name(self) -> str:
        return self.config.name or self.config.model

    def with_cache(self, cache: CallCache | None) -> LLM:
        """The same endpoint (engine and concurrency gate) with another call cache and counters of its own.

        Runs that share a model (the cells of an eval) each keep their own cache and
        accounting, while the server still sees at most `concurrency` calls from all of them.
        """
        twin = copy.copy(self)
        twin.cache = cache
        twin.stats = CallStats()
        twin._unscoped_repeats = Counter()
        return twin

    def tally(self, stage: str) -> CallTally:
        """This LLM's counters so far, as one line of `call_stats.jsonl`."""
        s = self.stats
        return CallTally(
            stage=stage,
            model=self.name,
            max_retries=self.config.max_retries,
            sent=s.sent,
            cached=s.cached,
            retries=s.retries,
            failures=s.failures,
            faults=dict(s.faults),
            input_tokens=s.input_tokens,
            output_tokens=s.output_tokens,
            cost=s.cost,
        )

    def _make_engine(self, http_client: httpx.AsyncClient | None) -> Engine:
        if self.config.engine == "transformers":
            from qednano.llm.local_engine import LocalEngine

            return LocalEngine(self.config)
        if self.config.engine == "builtin-teacher":
            from qednano.llm.teacher_engine import TeacherEngine

            return TeacherEngine(self.config)
        from qednano.llm.openai_engine import OpenAIEngine

        return OpenAIEngine(self.config, http_client)

    def request(self, messages: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
        """The request sent for these messages: recipe sampling defaults, then per-call params."""
        c = self.config
        defaults = {
            c.max_tokens_param: c.max_tokens,
            "temperature": c.temperature,
            "top_p": c.top_p,
            "seed": c.seed,
        }
        if "max_tokens" in params and c.max_tokens_param != "max_tokens":
            params[c.max_tokens_param] = params.pop("max_tokens")
        req: dict[str, Any] = {"model": c.model, "messages": messages}
        req.update({k: v for k, v in {**defaults, **params}.items() if v is not None})
        if c.extra_body:
            req["extra_body"] = {**c.extra_body, **req.get("extra_body", {})}
        return req

    def room(self, messages: list[dict[str, Any]]) -> int | None:
        """Output tokens the context window leaves after `messages`; None without a `context_length`."""
        return self.context.room(messages)

    def fits(self, messages: list[dict[str, Any]], max_tokens: int | None = None) -> bool:
        """True when `messages` leave the output room a call needs (`min_output_tokens`, or less when asked)."""
        return self.context.fits(messages, max_tokens)

    async def complete(
        self, messages: list[dict[str, Any]], *, step: str = "call", notes: Sequence[str] = (), **params: Any
    ) -> Completion:
        """Send one chat request (or replay it from the cache) and record it in the attempt scope.

        `notes`: what the caller changed to make the call fit (recorded on the Completion).
        """
        derive_seed = "seed" not in params
        request = self.request(messages, **params)
        scope = current_scope()
        scope_key = f"{scope.id if scope else ''}:{step}"
        # The repeat index is taken before the first await, so identical concurrent
        # requests get the same indices, in the same order, on every re-run.
        digest = request_digest(scope_key, request)
        repeats = scope.repeats if scope else self._unscoped_repeats
        repeat = repeats[digest]
        repeats[digest] += 1
        key = call_key(digest, repeat)

        # `is not None`: an empty CallCache is falsy (it has __len__), yet must be written.
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            # the cache leaves the prompt out: it is this request's, as the key is its hash
            completion = hit.model_copy(update={"cached": True, "step": step, "messages": request["messages"]})
            self.stats.cached += 1
        else:
            if scope and scope.token_budget is not None and scope.tokens >= scope.token_budget:
                raise BudgetExhausted(f"attempt {scope.id}: token budget {scope.token_budget} spent")
            sent = request
            if derive_seed and request.get("seed") is not None:
                sent = {**request, "seed": call_seed(request["seed"], scope_key, repeat)}
            try:
                sent, clamped = self.context.fit(sent)
            except ContextLengthError:
                self.stats.failures += 1
                raise
            completion = await self._send(sent, step, [*notes, *clamped])
            if self.cache is not None:
                self.cache.put(key, scope_key, completion)
        if scope:
            scope.completions.append(completion)
        return completion

    async def _ask(self, request: dict[str, Any], notes: list[str]) -> Reply:
        """One engine call; a context-length refusal that names the server's count is re-clamped once."""
        try:
            return await self.engine.send(request, self.config.timeout_s)
        except ContextLengthError as err:
            refit = self.context.refit(request, str(err))
            if refit is None:
                raise
            request.update(refit[0])  # in place: a later retry of this call sends the clamped request
            note = refit[1]
            notes.append(note)
            log.warning("%s: %s", self.name, note)
            return await self.engine.send(request, self.config.timeout_s)

    async def _send(self, request: dict[str, Any], step: str, notes: list[str] | None = None) -> Completion:
        c = self.config
        scope = current_scope()
        notes = notes if notes is not None else []
        async with self.gate.slot(len(scope.completions) if scope else 0):
            for attempt in range(c.max_retries + 1):
                start = time.monotonic()
                try:
                    reply = await asyncio.wait_for(self._ask(request, notes), c.timeout_s + 5)
                except TimeoutError:
                    fault = Retryable("timeout", f"no reply in {c.timeout_s:.0f}s")
                except Retryable as err:
                    fault = err
                except LLMError:
                    self.stats.failures += 1
                    raise
                else:
                    return self._completion(request, step, reply, time.monotonic() - start, notes)
                self.stats.faults[fault.kind] += 1
                if attempt == c.max_retries:
                    break
                self.stats.retries += 1
                delay = min(c.max_backoff_s, c.backoff_s * 2**attempt) * (0.5 + random.random() / 2)
                if fault.retry_after is not None:
                    delay = min(c.max_backoff_s, max(delay, fault.retry_after))
                log.warning(
                    "%s %s: %s (%s); retry %d/%d in %.1fs",
                    self.name,
                    step,
                    fault.kind,
                    fault,
                    attempt + 1,
                    c.max_retries,
                    delay,
                )
                await asyncio.sleep(delay)
            self.stats.failures += 1
            raise LLMError(
                f"{self.name} {step}: gave up after {c.max_retries + 1} tries; last error: {fault.kind}: {fault}"
            )

    def _completion(
        self, request: dict[str, Any], step: str, reply: Reply, seconds: float, notes: list[str]
    ) -> Completion:
        c = self.config
        text, reasoning, unclosed = split_reasoning(reply.content, reply.reasoning, c.reasoning_delimiter)
        cost = (reply.input_tokens * c.price_input + reply.output_tokens * c.price_output) / 1e6
        s = self.stats
        s.sent += 1
        s.input_tokens += reply.input_tokens
        s.output_tokens += reply.output_tokens
        s.cost += cost
        return Completion(
            step=step,
            model=c.model,
            messages=request["messages"],
            text=text,
            reasoning=reasoning,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cost=cost,
            seconds=round(seconds, 3),
            finish_reason=reply.finish_reason,
            truncated=unclosed or reply.finish_reason == "length",
            notes=list(notes),
        )

    async def aclose(self) -> None:
        close = getattr(self.engine, "aclose", None)
        if close is not None:
            await close()


class Models:
    """The roles a scaffold may call. `summarizer` and `verifier` default to the policy."""

    def __init__(self, policy: LLM, summarizer: LLM | None = None, verifier: LLM | None = None) -> None:
        self.policy = policy
        self.summarizer = summarizer or policy
        self.verifier = verifier or policy
