"""The loopback fake server itself: protocol, faults, seeded timing, capacity figures, concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from qednano.llm.client import LLM
from qednano.llm.types import ModelConfig
from qednano.testing.fake_server import FAULT_KINDS, ErrorReply, FakeServer, ScriptedReply, Timing


def chat(client: httpx.Client, url: str, content: str = "hi", **params: Any) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": content}], **params}
    return client.post(f"{url}/chat/completions", json=body)


def test_scripted_reply_and_counters() -> None:
    def script(body: dict[str, Any]) -> ScriptedReply:
        return ScriptedReply(
            content="two words", reasoning_content="three more words", finish_reason="length", prompt_tokens=11
        )

    with FakeServer(script) as server, httpx.Client() as client:
        data = chat(client, server.url).json()
        models = client.get(f"{server.url}/models").json()
        missing = client.post(f"{server.url}/completions", json={})
    message = data["choices"][0]["message"]
    assert (message["content"], message["reasoning_content"]) == ("two words", "three more words")
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    assert models["data"][0]["id"] == "fake-model" and missing.status_code == 404
    assert (server.requests, server.replies, server.bodies[0]["messages"][0]["content"]) == (1, 1, "hi")


def test_error_replies_and_429_retry_after() -> None:
    with (
        FakeServer(lambda body: ErrorReply(400, "prompt too long", code="context_length_exceeded")) as bad,
        FakeServer(fault_plan=["429"], retry_after_s=2.5) as limited,
        httpx.Client() as client,
    ):
        refused = chat(client, bad.url)
        throttled = chat(client, limited.url)
        fine = chat(client, limited.url)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "context_length_exceeded"
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "2.5"
    assert fine.status_code == 200 and limited.faults == {"429": 1}


def test_fault_rates_are_seeded() -> None:
    def faults_seen(seed: int) -> list[str]:
        rates = {"500": 0.2, "503": 0.2, "empty_choices": 0.2}
        with FakeServer(faults=rates, seed=seed) as server, httpx.Client() as client:
            statuses = [chat(client, server.url) for _ in range(30)]
        return [f"{r.status_code}:{len(r.json()['choices']) if r.status_code == 200 else ''}" for r in statuses]

    assert faults_seen(1) == faults_seen(1)
    assert faults_seen(1) != faults_seen(2)
    assert {"500:", "503:", "200:0", "200:1"} <= set(faults_seen(1))


def test_unknown_fault_kinds_and_impossible_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kinds"):
        FakeServer(faults={"teapot": 0.1})
    with pytest.raises(ValueError, match="more than 1"):
        FakeServer(faults=dict.fromkeys(FAULT_KINDS[:3], 0.5))


def test_timing_lengths_are_seeded_per_request_not_per_arrival() -> None:
    timing = Timing(slots=4, tokens_per_s=1e6, mean_tokens=300, sigma=0.8)

    def lengths(order: list[int], seed: int) -> dict[int, int]:
        with FakeServer(timing=timing, seed=seed) as server, httpx.Client() as client:
            return {i: chat(client, server.url, f"q{i}").json()["usage"]["completion_tokens"] for i in order}

    forward = lengths([0, 1, 2, 3, 4, 5], seed=7)
    assert forward == lengths([5, 4, 3, 2, 1, 0], seed=7)
    assert forward != lengths([0, 1, 2, 3, 4, 5], seed=8)
    assert len(set(forward.values())) > 1


async def test_timing_slots_queue_and_report_capacity() -> None:
    timing = Timing(slots=2, tokens_per_s=1000, mean_tokens=50, sigma=0.0, time_scale=0.5)
    with FakeServer(timing=timing) as server:
        llm = LLM(ModelConfig(model="m", base_urls=[server.url], concurrency=16))
        done = await asyncio.gather(*(llm.complete([{"role": "user", "content": f"q{i}"}]) for i in range(6)))
        capped = await llm.complete([{"role": "user", "content": "short"}], max_tokens=20)
        await llm.aclose()
        report = server.timing_report()
    assert [c.output_tokens for c in done] == [50] * 6
    assert (capped.output_tokens, capped.finish_reason, capped.truncated) == (20, "length", True)
    assert (report.sequences, report.output_tokens) == (7, 320)
    assert report.peak_active == 2 and report.peak_queued >= 3  # six requests at once, two slots
    assert report.busy_s == pytest.approx(0.32)
    assert report.lower_bound_s == pytest.approx(320 / (2 * 1000))
    assert report.makespan_s >= 0.95 * report.lower_bound_s  # no schedule beats the bound
    assert 0 < report.utilization <= 1.05


async def test_hundreds_of_concurrent_connections() -> None:
    timing = Timing(slots=300, tokens_per_s=100, mean_tokens=200, sigma=0.0)  # every reply holds 2 s
    with FakeServer(timing=timing) as server:
        llm = LLM(ModelConfig(model="m", base_urls=[server.url], concurrency=300))
        done = await asyncio.gather(*(llm.complete([{"role": "user", "content": f"q{i}"}]) for i in range(300)))
        await llm.aclose()
    assert len(done) == 300 and server.replies == 300
    assert server.peak_inflight > 100  # many connections were open and served at the same time
