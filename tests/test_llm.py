"""The real `LLM` class (openai engine) against `httpx.MockTransport` and the loopback fake server.

Covers: bounded, counted retries; recovery from 429, 5xx, timeouts, dropped connections and
bad bodies; a caller's 400 failing at once; context-length errors; usage and cost; both ways
of splitting reasoning; `extra_body` passthrough; several base URLs sharing the load.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from qednano.llm.client import LLM
from qednano.llm.types import ContextLengthError, LLMError, ModelConfig
from qednano.testing.fake_server import FakeServer, ScriptedReply

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]
USER = [{"role": "user", "content": "Prove it."}]


def ok(content: str = "done", *, reasoning: str | None = None, usage: tuple[int, int] = (10, 5)) -> httpx.Response:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    return httpx.Response(
        200,
        json={
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        },
    )


def mock_llm(handler: Handler, **config: Any) -> LLM:
    settings: dict[str, Any] = {"model": "m", "base_urls": ["http://a.test/v1"], "backoff_s": 0.0}
    settings.update(config)
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return LLM(ModelConfig(**settings), http_client=client)


def scripted(*steps: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler that plays `steps` in order (responses, or exceptions to raise) and records requests."""
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = steps[min(len(seen), len(steps)) - 1]
        if isinstance(step, Exception):
            raise step
        return step

    return handler, seen


async def test_transient_faults_recover_and_are_counted() -> None:
    handler, seen = scripted(
        httpx.Response(429, headers={"retry-after": "0"}, json={"error": {"message": "slow down"}}),
        httpx.Response(500, json={"error": {"message": "boom"}}),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(503, json={"error": {"message": "overloaded"}}),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("peer closed connection"),
        ok("the proof"),
    )
    llm = mock_llm(handler, max_retries=7)
    completion = await llm.complete(USER)
    assert completion.text == "the proof"
    assert len(seen) == 8
    assert llm.stats.retries == 7
    assert llm.stats.sent == 1 and llm.stats.failures == 0
    assert llm.stats.faults == Counter({"429": 1, "5xx": 3, "timeout": 1, "connection": 2})


async def test_retries_are_bounded() -> None:
    handler, seen = scripted(httpx.Response(503, json={"error": {"message": "overloaded"}}))
    llm = mock_llm(handler, max_retries=2)
    with pytest.raises(LLMError, match="gave up after 3 tries"):
        await llm.complete(USER)
    assert len(seen) == 3
    assert (llm.stats.retries, llm.stats.failures, llm.stats.sent) == (2, 1, 0)


async def test_retry_after_is_honoured(caplog: pytest.LogCaptureFixture) -> None:
    handler, _ = scripted(httpx.Response(429, headers={"retry-after": "0.5"}, json={"error": {}}), ok())
    llm = mock_llm(handler, max_retries=1)
    with caplog.at_level(logging.WARNING, logger="qednano.llm.client"):
        await llm.complete(USER)
    assert "retry 1/1 in 0.5s" in caplog.text  # backoff_s is 0: the delay comes from Retry-After


async def test_caller_error_fails_at_once_with_the_server_message() -> None:
    bad = httpx.Response(400, json={"error": {"message": "temperature must be <= 2", "type": "invalid_request"}})
    handler, seen = scripted(bad, ok())
    llm = mock_llm(handler, max_retries=5)
    with pytest.raises(LLMError, match="temperature must be <= 2") as err:
        await llm.complete(USER, temperature=9)
    assert not isinstance(err.value, ContextLengthError)
    assert len(seen) == 1 and llm.stats.retries == 0 and llm.stats.failures == 1


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested 5000."}},
        {"error": {"message": "Input is too large.", "code": "context_length_exceeded"}},
    ],
)
async def test_context_length_error(body: dict[str, Any]) -> None:
    handler, seen = scripted(httpx.Response(400, json=body))
    with pytest.raises(ContextLengthError):
        await mock_llm(handler, max_retries=3).complete(USER)
    assert len(seen) == 1


async def test_usage_and_cost_add_up() -> None:
    handler, _ = scripted(ok(usage=(1000, 200)), ok(usage=(3000, 50)))
    llm = mock_llm(handler, price_input=2.0, price_output=10.0)
    first = await llm.complete(USER)
    second = await llm.complete(USER, temperature=0.5)
    assert (first.input_tokens, first.output_tokens) == (1000, 200)
    assert first.cost == pytest.approx((1000 * 2 + 200 * 10) / 1e6)
    assert second.cost == pytest.approx((3000 * 2 + 50 * 10) / 1e6)
    assert (llm.stats.input_tokens, llm.stats.output_tokens) == (4000, 250)
    assert llm.stats.cost == pytest.approx(first.cost + second.cost)
    assert first.finish_reason == "stop" and first.seconds >= 0


@pytest.mark.parametrize(
    ("content", "reasoning", "delimiter", "expected"),
    [
        ("Final.", "I thought.", None, ("Final.", "I thought.", False)),
        ("Final.", "I thought.", "</think>", ("Final.", "I thought.", False)),  # the server's field wins
        ("<think>I thought.</think>\nFinal.", None, "</think>", ("Final.", "I thought.", False)),
        ("<think>I thought and thought", None, "</think>", ("", "I thought and thought", True)),
        ("No reasoning here.", None, None, ("No reasoning here.", "", False)),
    ],
)
async def test_reasoning_is_split(
    content: str, reasoning: str | None, delimiter: str | None, expected: tuple[str, str, bool]
) -> None:
    handler, _ = scripted(ok(content, reasoning=reasoning))
    completion = await mock_llm(handler, reasoning_delimiter=delimiter).complete(USER)
    assert (completion.text, completion.reasoning, completion.truncated) == expected


async def test_extra_body_and_sampling_pass_through() -> None:
    handler, seen = scripted(ok())
    llm = mock_llm(
        handler,
        temperature=0.7,
        max_tokens=123,
        max_tokens_param="max_completion_tokens",
        extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}},
    )
    await llm.complete(USER, extra_body={"reasoning_effort": "high"}, seed=7)
    body = json.loads(seen[0].content)
    assert body["model"] == "m" and body["messages"] == USER
    assert body["temperature"] == 0.7 and body["seed"] == 7
    assert body["max_completion_tokens"] == 123 and "max_tokens" not in body
    assert body["top_k"] == 20
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["reasoning_effort"] == "high"


async def test_base_urls_share_the_load() -> None:
    hosts: Counter[str] = Counter()

    async def handler(request: httpx.Request) -> httpx.Response:
        hosts[request.url.host] += 1
        await asyncio.sleep(0.01)  # overlap the calls, as a real server would
        return ok()

    urls = ["http://a.test/v1", "http://b.test/v1", "http://c.test/v1"]
    llm = mock_llm(handler, base_urls=urls, concurrency=6)
    await asyncio.gather(*(llm.complete([{"role": "user", "content": f"q{i}"}]) for i in range(30)))
    for _ in range(6):  # one at a time, too, the replicas take turns
        await llm.complete(USER)
    assert hosts == Counter({"a.test": 12, "b.test": 12, "c.test": 12})


# ---------------------------------------------------------------------------- fake server


def server_llm(*servers: FakeServer, **config: Any) -> LLM:
    settings: dict[str, Any] = {"model": "m", "base_urls": [s.url for s in servers], "backoff_s": 0.0}
    settings.update(config)
    return LLM(ModelConfig(**settings))


@pytest.mark.parametrize(
    ("fault", "seen_as"),
    [
        ("429", "429"),
        ("500", "5xx"),
        ("502", "5xx"),
        ("503", "5xx"),
        ("hang", "timeout"),
        ("drop", "connection"),
        ("truncated", "connection"),
        ("invalid_json", "bad_response"),
        ("empty_choices", "bad_response"),
    ],
)
async def test_each_server_fault_recovers(fault: str, seen_as: str) -> None:
    with FakeServer(lambda body: "the proof", fault_plan=[fault]) as server:
        llm = server_llm(server, max_retries=2, timeout_s=0.3)
        completion = await llm.complete(USER)
        await llm.aclose()
    assert completion.text == "the proof"
    assert server.faults == Counter({fault: 1}) and server.requests == 2
    assert llm.stats.faults == Counter({seen_as: 1}) and llm.stats.retries == 1


async def test_unclosed_reasoning_from_the_server_is_truncated() -> None:
    with FakeServer(fault_plan=["unclosed_reasoning"]) as server:
        llm = server_llm(server, reasoning_delimiter="</think>")
        completion = await llm.complete(USER)
        await llm.aclose()
    assert completion.text == "" and completion.truncated and completion.reasoning.startswith("Let me")
    assert llm.stats.retries == 0  # a cut-off answer is an answer, not a fault


async def test_random_faults_under_load_all_recover() -> None:
    faults = {"429": 0.08, "503": 0.06, "drop": 0.04, "invalid_json": 0.03, "hang": 0.02, "empty_choices": 0.02}
    with FakeServer(lambda body: ScriptedReply(content="ok", reasoning_content="hmm"), faults=faults, seed=3) as s:
        llm = server_llm(s, max_retries=8, timeout_s=0.3, concurrency=16)
        results = await asyncio.gather(*(llm.complete([{"role": "user", "content": f"q{i}"}]) for i in range(60)))
        await llm.aclose()
    assert all(c.text == "ok" and c.reasoning == "hmm" for c in results)
    assert sum(s.faults.values()) > 0
    assert llm.stats.retries == sum(s.faults.values()) == sum(llm.stats.faults.values())
    assert s.requests == 60 + llm.stats.retries and llm.stats.sent == 60 == s.replies


async def test_two_servers_share_the_load_over_http() -> None:
    with FakeServer() as one, FakeServer() as two:
        llm = server_llm(one, two, concurrency=8)
        await asyncio.gather(*(llm.complete([{"role": "user", "content": f"q{i}"}]) for i in range(20)))
        await llm.aclose()
    assert one.requests + two.requests == 20
    assert one.requests >= 5 and two.requests >= 5


def test_one_llm_serves_successive_event_loops() -> None:
    """CLI stages may each `asyncio.run` with the same LLM; a full concurrency gate must not break that."""
    handler, seen = scripted(ok())
    llm = mock_llm(handler, concurrency=1)

    async def burst() -> None:
        await asyncio.gather(*(llm.complete([{"role": "user", "content": f"q{i}"}]) for i in range(3)))

    asyncio.run(burst())
    asyncio.run(burst())
    assert len(seen) == 6


async def test_twins_share_the_concurrency_gate_but_not_cache_or_counters(tmp_path: Any) -> None:
    from qednano.llm.cache import CallCache
    from qednano.llm.client import attempt_scope
    from qednano.llm.types import Reply

    class Slow:
        inflight = peak = 0

        async def send(self, request: dict[str, Any], timeout: float) -> Reply:
            Slow.inflight += 1
            Slow.peak = max(Slow.peak, Slow.inflight)
            await asyncio.sleep(0.01)
            Slow.inflight -= 1
            return Reply("ok", None, 3, 2, "stop")

    base = LLM(ModelConfig(model="m", concurrency=2), engine=Slow())
    caches = [CallCache(tmp_path / f"{i}.sqlite") for i in range(2)]
    twins = [base.with_cache(c) for c in caches]

    async def calls(llm: LLM) -> None:
        async def one(i: int) -> None:
            with attempt_scope(f"p/{i}"):
                await llm.complete([{"role": "user", "content": str(i)}])

        await asyncio.gather(*(one(i) for i in range(5)))

    await asyncio.gather(*(calls(t) for t in twins))
    assert Slow.peak == 2  # one server limit over both runs, not 2 each
    assert [t.stats.sent for t in twins] == [5, 5] and base.stats.sent == 0
    assert [len(c) for c in caches] == [5, 5]


async def test_the_gate_serves_the_attempt_that_is_behind_first() -> None:
    from qednano.llm.client import Gate

    gate, order = Gate(1), []

    async def call(name: str, finished_calls: int) -> None:
        async with gate.slot(finished_calls):
            order.append(name)
            await asyncio.sleep(0)

    async with gate.slot(0):  # hold the only slot while the others queue up
        waiting = [asyncio.create_task(call(n, k)) for n, k in (("ahead", 5), ("behind", 0), ("middle", 2))]
        await asyncio.sleep(0)
    cancelled = asyncio.create_task(call("cancelled", 0))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(*waiting)
    assert order == ["behind", "middle", "ahead"]
    async with asyncio.timeout(5), gate.slot(0):  # every slot was given back, the cancelled waiter's too
        assert gate._active == 1 and not gate._waiting


async def test_a_wide_concurrency_splits_each_url_into_pools_of_32_and_spreads_over_urls() -> None:
    """httpx scans a pool's every connection per request: 256 calls in flight get 8 pools of 32, not one of 256."""
    from qednano.llm.openai_engine import OpenAIEngine

    urls = ["http://a.test/v1", "http://b.test/v1"]
    wide = OpenAIEngine(ModelConfig(model="m", base_urls=urls, concurrency=256))
    narrow = OpenAIEngine(ModelConfig(model="m", base_urls=urls, concurrency=16))
    try:
        assert len(wide.clients) == 8 and len(narrow.clients) == 2
        hosts: Counter[str] = Counter()
        for _ in range(8):  # calls that stay in flight: each takes the least busy pool
            i = wide.pick()
            wide.busy[i] += 1
            hosts[wide.clients[i].base_url.host] += 1
        assert wide.busy == [1] * 8 and hosts == Counter({"a.test": 4, "b.test": 4})
    finally:
        await wide.aclose()
        await narrow.aclose()
