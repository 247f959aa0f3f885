"""A loopback OpenAI-compatible `/v1/chat/completions` server for tests and benchmarks.

`FakeServer` runs a small HTTP/1.1 server (stdlib asyncio, keep-alive, hundreds of
concurrent connections) on 127.0.0.1 in a background thread, so the real `LLM` class and
the real `qednano` CLI can be exercised end to end with no model and no network:

- scripted replies: `script(request_body) -> ScriptedReply | ErrorReply | str`;
- GPU-like timing (`Timing`, `fake_gpu.py`): a fixed number of sequences decode at once (extra requests
  queue), each at a fixed token rate, with output lengths drawn from a seeded log-normal;
  `timing_report()` gives the busy time and the makespan lower bound
  `output tokens / (slots * rate)` that the scaffold-orchestration benchmark compares to;
- a context window like vLLM's (`context_length=`): a prompt that leaves no room, or a
  `max_tokens` larger than the room, is refused with vLLM's 400 and message; without
  `max_tokens` the reply is capped at the room (finish `length`);
- long texts (`fill=`): in timing mode each reply's text is as long as its drawn length,
  filler reasoning in `<think>...</think>` and a filler proof before the script's content, cut
  off at `max_tokens` like a real decode (an unclosed `<think>` when the cap falls in it);
- seeded fault injection by kind (`FAULT_KINDS`): 429 with Retry-After, 500/502/503, a hang
  past the client's timeout, a dropped connection, a truncated body, an invalid JSON body,
  empty `choices`, and reasoning that never closes its `<think>`.

Counters (`requests`, `replies`, `faults`, `bodies`, `answered`, `authorizations`, `peak_inflight`,
`refused`, `prompt_counts`)
are written only by the server thread; tests read them after their calls have returned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from qednano.testing.fake_gpu import Decoder, Timing, TimingReport, context_refusal, filled

FAULT_KINDS = (
    "429",
    "500",
    "502",
    "503",
    "hang",
    "drop",
    "truncated",
    "invalid_json",
    "empty_choices",
    "unclosed_reasoning",
)
"""Every fault the server can inject, as keys of `faults=` and entries of `fault_plan=`."""


@dataclass
class ScriptedReply:
    """One successful chat completion, as a script wants it sent."""

    content: str = ""
    reasoning_content: str | None = None
    """Sent as `message.reasoning_content` (vLLM/SGLang reasoning parsers) when not None."""
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    """Usage figures; None counts them roughly (whitespace-separated words, +4 a message)."""
    completion_tokens: int | None = None
    """None counts the words of content and reasoning; in timing mode it draws a seeded length."""
    delay_s: float = 0.0
    """Wait this long before replying (ends early if the client hangs up)."""


@dataclass
class ErrorReply:
    """An HTTP error with an OpenAI-style error body, e.g. a 400 for a too-long prompt."""

    status: int
    message: str
    code: str | None = None
    retry_after: float | None = None


Script = Callable[[dict[str, Any]], "ScriptedReply | ErrorReply | str"]
"""Maps a request body to its reply; a plain string is the reply's content."""


def rough_tokens(text: str) -> int:
    """A crude token count: whitespace-separated words."""
    return len(text.split())


def prompt_tokens(request: Mapping[str, Any]) -> int:
    """A crude prompt token count: the words of every message plus 4 for its framing."""
    total = 0
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else message
        total += 4 + rough_tokens(content if isinstance(content, str) else json.dumps(content))
    return total


class FakeServer:
    """The server; use as `with FakeServer(...) as server: LLM(... base_urls=[server.url])`."""

    def __init__(
        self,
        script: Script | None = None,
        *,
        timing: Timing | None = None,
        faults: Mapping[str, float] | None = None,
        fault_plan: Sequence[str | None] = (),
        seed: int = 0,
        retry_after_s: float = 0.01,
        hang_s: float = 60.0,
        model: str = "fake-model",
        port: int = 0,
        context_length: int | None = None,
        fill: float | None = None,
        count_prompt: Callable[[Mapping[str, Any]], int] | None = None,
    ) -> None:
        """`faults` maps kinds to rates (drawn per request, seeded); `fault_plan` fixes the
        fault (or None) of the first requests in arrival order, before rates apply.

        `context_length`: enforce a context window like vLLM (400s with its messages).
        `fill`: with `timing`, make each reply's text as long as its drawn token count, this
        share of it the final text (after `</think>`), the rest reasoning.
        `count_prompt`: the server's prompt token count (default `prompt_tokens`, words + 4 a message)."""
        unknown = set(faults or {}) | {k for k in fault_plan if k is not None}
        unknown -= set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if sum((faults or {}).values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        self.script = script
        self.decoder = Decoder(timing, seed) if timing is not None else None
        self.fault_rates = dict(faults or {})
        self.fault_plan = list(fault_plan)
        self.seed = seed
        self.retry_after_s = retry_after_s
        self.hang_s = hang_s
        self.model = model
        self.port = port
        self.context_length = context_length
        self.fill = fill
        self.count_prompt = count_prompt or prompt_tokens
        self.refused = 0
        """Requests refused for the context window (400)."""
        self.prompt_counts: list[int] = []
        """Prompt tokens of every request answered, in order (to check a run stayed in the window)."""
        self.requests = 0
        """POST /chat/completions requests received, faulted or not."""
        self.replies = 0
        """Successful completions sent."""
        self.faults: Counter[str] = Counter()
        """Faults injected, by kind."""
        self.bodies: list[dict[str, Any]] = []
        """Every request body received, in arrival order."""
        self.answered: list[dict[str, Any]] = []
        """The request bodies answered with a whole completion (a scripted reply, or the fault
        `unclosed_reasoning`, which the client takes as a finished call), in order."""
        self.authorizations: list[str] = []
        """The Authorization header of every request (to check which key was sent)."""
        self.peak_inflight = 0
        """Most chat requests being handled at once."""
        self._inflight = 0
        self._rng = random.Random(seed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The base URL for an OpenAI client: `http://127.0.0.1:<port>/v1`."""
        if self._server is None:
            raise RuntimeError("FakeServer is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeServer:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-server", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(timeout=30)
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def inflight(self) -> int:
        """Chat requests being handled right now."""
        return self._inflight

    def timing_report(self) -> TimingReport:
        """Busy time and capacity of the timing mode (zeros without it)."""
        return (self.decoder or Decoder(Timing(), self.seed)).report()

    # ------------------------------------------------------------------ HTTP

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            keep = True
            while keep:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                method, path, headers = parse_head(head)
                body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                keep = await self._route(method, path, headers, body, reader, writer)
                keep = keep and headers.get("connection", "").lower() != "close"
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass  # the client went away or sent garbage: drop the connection
        except asyncio.CancelledError:
            pass  # server shutdown; re-raising makes asyncio log the cancelled handler as an error
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _route(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; False when the connection must close after it."""
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path.endswith("/models"):
            models = {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "fake"}]}
            return await send(writer, 200, json.dumps(models).encode())
        if method != "POST" or not path.endswith("/chat/completions"):
            return await send(writer, 404, error_body(f"no route {method} {path}", "not_found"))
        self.requests += 1
        self.authorizations.append(headers.get("authorization", ""))
        self._inflight += 1
        self.peak_inflight = max(self.peak_inflight, self._inflight)
        try:
            return await self._chat(body, reader, writer)
        finally:
            self._inflight -= 1

    def _pick_fault(self) -> str | None:
        index = self.requests - 1
        if index < len(self.fault_plan):
            return self.fault_plan[index]
        if not self.fault_rates:
            return None
        draw = self._rng.random()
        for kind, rate in self.fault_rates.items():
            if draw < rate:
                return kind
            draw -= rate
        return None

    async def _chat(self, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return await send(writer, 400, error_body("request body is not a JSON object", "invalid_request"))
        self.bodies.append(request)
        if request.get("stream"):
            return await send(writer, 400, error_body("the fake server does not stream", "invalid_request"))
        refusal = self._over_context(request)
        if refusal is not None:
            self.refused += 1
            return await send(writer, 400, error_body(refusal, "BadRequestError"))
        fault = self._pick_fault()
        if fault is not None:
            self.faults[fault] += 1
            if fault != "unclosed_reasoning":
                return await self._fault(fault, reader, writer)
        reply: ScriptedReply | ErrorReply | str
        if fault == "unclosed_reasoning":
            reply = ScriptedReply(content="<think>Let me try small cases first and", finish_reason="length")
        else:
            reply = self.script(request) if self.script else f"A proof. (reply {self.requests})"
        if isinstance(reply, str):
            reply = ScriptedReply(content=reply)
        if isinstance(reply, ErrorReply):
            extra = {"retry-after": f"{reply.retry_after:g}"} if reply.retry_after is not None else {}
            return await send(writer, reply.status, error_body(reply.message, reply.code), extra)
        tokens, finish = reply.completion_tokens, reply.finish_reason
        cap = request.get("max_tokens") or request.get("max_completion_tokens")
        prompt = self.count_prompt(request)
        if self.context_length is not None:
            room = self.context_length - prompt
            cap = room if not isinstance(cap, int) else min(cap, room)
        if self.decoder is not None:
            tokens = self.decoder.sample(request) if tokens is None else tokens
            if self.fill is not None:
                content, tokens, cut = filled(reply.content, tokens, self.fill, cap if isinstance(cap, int) else None)
                reply = ScriptedReply(content, None, "length" if cut else finish, reply.prompt_tokens, tokens)
                finish = reply.finish_reason
            if isinstance(cap, int) and tokens > cap:
                tokens, finish = cap, "length"
            await self.decoder.decode(tokens)
        if tokens is None:
            tokens = rough_tokens(reply.content) + rough_tokens(reply.reasoning_content or "")
        if reply.prompt_tokens is None:
            reply = dataclasses.replace(reply, prompt_tokens=prompt)
        if reply.delay_s and await wait_or_hangup(reader, reply.delay_s):
            return False
        self.replies += 1
        self.answered.append(request)
        self.prompt_counts.append(prompt)
        return await send(writer, 200, completion_body(request, reply, tokens, finish, self.model))

    def _over_context(self, request: dict[str, Any]) -> str | None:
        """vLLM's refusal message when the request does not fit the context window, else None."""
        if self.context_length is None:
            return None
        asked = request.get("max_tokens") or request.get("max_completion_tokens")
        return context_refusal(self.context_length, self.count_prompt(request), asked)

    async def _fault(self, kind: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if kind == "429":
            extra = {"retry-after": f"{self.retry_after_s:g}"}
            return await send(writer, 429, error_body("rate limited (injected)", "rate_limit_exceeded"), extra)
        if kind in ("500", "502", "503"):
            return await send(writer, int(kind), error_body(f"server error {kind} (injected)", "server_error"))
        if kind == "hang":
            await wait_or_hangup(reader, self.hang_s)
            return False
        if kind == "drop":
            writer.transport.abort()
            return False
        if kind == "truncated":
            whole = json.dumps({"id": "chatcmpl-fake", "choices": [{"index": 0, "message": {"content": "x" * 64}}]})
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(whole)}\r\n\r\n"
            writer.write(head.encode() + whole[: len(whole) // 2].encode())
            await writer.drain()
            writer.transport.abort()
            return False
        if kind == "invalid_json":
            return await send(writer, 200, b'{"id": "chatcmpl-fake", "choices": [{"index": 0, "mess')
        if kind == "empty_choices":
            empty = {"id": "chatcmpl-fake", "object": "chat.completion", "model": self.model, "choices": []}
            return await send(writer, 200, json.dumps(empty).encode())
        raise AssertionError(f"unhandled fault {kind}")


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Request line and headers of one HTTP/1.1 request (names lower-cased)."""
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


def completion_body(request: dict[str, Any], reply: ScriptedReply, tokens: int, finish: str, model: str) -> bytes:
    """An OpenAI chat.completion JSON body for one scripted reply."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.reasoning_content is not None:
        message["reasoning_content"] = reply.reasoning_content
    usage_in = reply.prompt_tokens if reply.prompt_tokens is not None else prompt_tokens(request)
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", model),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": usage_in, "completion_tokens": tokens, "total_tokens": usage_in + tokens},
    }
    return json.dumps(body).encode()


def error_body(message: str, code: str | None) -> bytes:
    return json.dumps({"error": {"message": message, "type": code or "error", "code": code}}).encode()


async def send(writer: asyncio.StreamWriter, status: int, body: bytes, extra: dict[str, str] | None = None) -> bool:
    """Write one whole JSON response; True (the connection stays open)."""
    head = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in (extra or {}).items()),
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    return True


async def wait_or_hangup(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Sleep up to `seconds`; True if the client closed the connection meanwhile.

    HTTP/1.1 clients send nothing more on a connection while a reply is pending, so the
    only thing a read can see here is the end of the stream.
    """
    try:
        data = await asyncio.wait_for(reader.read(1), seconds)
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return not data
