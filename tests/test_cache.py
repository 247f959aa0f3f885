"""The call cache through the real `LLM`: finished calls replay on re-run, repeats stay distinct."""

from __future__ import annotations

import asyncio
import itertools
import threading
from pathlib import Path
from typing import Any

import httpx

from qednano.llm.cache import CallCache, request_key
from qednano.llm.client import LLM, attempt_scope
from qednano.llm.types import ModelConfig
from qednano.records import Completion

USER = [{"role": "user", "content": "Prove it."}]


class Numbered:
    """A mock server whose every reply is unique (`reply 1`, `reply 2`, ...)."""

    def __init__(self) -> None:
        self.count = itertools.count(1)
        self.sent = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        await asyncio.sleep(0)
        message = {"role": "assistant", "content": f"reply {next(self.count)}"}
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            },
        )


def cached_llm(server: Numbered, path: Path) -> LLM:
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    return LLM(ModelConfig(model="m", base_urls=["http://a.test/v1"]), CallCache(path), http_client=client)


async def one_attempt(llm: LLM, attempt_id: str) -> list[Completion]:
    """A scaffold-like burst: five identical concurrent calls, then a follow-up step."""
    with attempt_scope(attempt_id) as scope:
        await asyncio.gather(*(llm.complete(USER, step="solve") for _ in range(5)))
        await llm.complete(USER, step="check")
    return scope.completions


async def test_rerun_replays_finished_calls_without_sending(tmp_path: Path) -> None:
    server = Numbered()
    first = await one_attempt(cached_llm(server, tmp_path / "calls.sqlite"), "p/0")
    assert server.sent == 6
    texts = sorted(c.text for c in first)
    assert len(set(texts)) == 6  # identical requests were sent as distinct repeats

    again = cached_llm(server, tmp_path / "calls.sqlite")  # a new process: fresh LLM, same file
    second = await one_attempt(again, "p/0")
    assert server.sent == 6  # nothing sent
    assert again.stats.cached == 6 and again.stats.sent == 0
    assert all(c.cached for c in second) and not any(c.cached for c in first)
    assert sorted(c.text for c in second) == texts


async def test_repeat_indices_are_deterministic(tmp_path: Path) -> None:
    """The n-th of n identical concurrent calls gets the n-th cached reply on every re-run."""
    server = Numbered()

    async def burst(llm: LLM) -> list[str]:
        with attempt_scope("p/0"):
            done = await asyncio.gather(*(llm.complete(USER, step="solve") for _ in range(8)))
        return [c.text for c in done]

    first = await burst(cached_llm(server, tmp_path / "calls.sqlite"))
    second = await burst(cached_llm(server, tmp_path / "calls.sqlite"))
    assert server.sent == 8
    assert second == first


async def test_scopes_and_steps_do_not_share_entries(tmp_path: Path) -> None:
    server = Numbered()
    llm = cached_llm(server, tmp_path / "calls.sqlite")
    for attempt_id, step in [("p/0", "solve"), ("p/1", "solve"), ("p/0", "verify")]:
        with attempt_scope(attempt_id):
            await llm.complete(USER, step=step)
    assert server.sent == 3 and len(llm.cache or []) == 3


async def test_unscoped_identical_calls_are_distinct_repeats(tmp_path: Path) -> None:
    server = Numbered()
    llm = cached_llm(server, tmp_path / "calls.sqlite")
    texts = [(await llm.complete(USER)).text for _ in range(3)]
    assert texts == ["reply 1", "reply 2", "reply 3"]
    replay = cached_llm(server, tmp_path / "calls.sqlite")
    assert [(await replay.complete(USER)).text for _ in range(3)] == texts
    assert server.sent == 3


def test_concurrent_writers_in_one_process(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "calls.sqlite")
    completion = Completion(step="s", model="m", messages=[], text="t")

    def write(worker: int) -> None:
        for i in range(50):
            request: dict[str, Any] = {"worker": worker, "i": i}
            cache.put(request_key("scope", request, 0), "scope", completion)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 400
    cache.close()
    assert len(CallCache(tmp_path / "calls.sqlite")) == 400


async def test_the_cache_stores_no_prompt_and_a_replay_gets_the_request_back(tmp_path: Path) -> None:
    """A prompt (most of a call's bytes) lives in the attempt's transcript; the cache keeps its digest only."""
    import sqlite3

    from qednano.llm.cache import prompt_digest

    candidates = "".join(
        f"Candidate {i}: a long proof line that RSA repeats in every aggregation.\n" for i in range(300)
    )
    messages = [{"role": "system", "content": "Be rigorous."}, {"role": "user", "content": candidates}]
    server = Numbered()
    with attempt_scope("p/0") as scope:
        sent = await cached_llm(server, tmp_path / "calls.sqlite").complete(messages, step="aggregate")
    assert sent.messages == messages and scope.completions == [sent]
    with sqlite3.connect(tmp_path / "calls.sqlite") as db:
        ((completion, prompt),) = db.execute("SELECT completion, prompt FROM calls").fetchall()
    assert "Candidate 7" not in completion and len(completion) < 1000
    assert prompt == prompt_digest("m", messages)
    with attempt_scope("p/0"):
        replayed = await cached_llm(server, tmp_path / "calls.sqlite").complete(messages, step="aggregate")
    assert server.sent == 1 and replayed.cached and replayed.messages == messages and replayed.text == sent.text


def test_a_call_not_in_the_cache_costs_no_query(tmp_path: Path) -> None:
    cache = CallCache(tmp_path / "calls.sqlite")
    cache.put("known/0", "s", Completion(step="s", model="m", messages=USER, text="t"))
    statements: list[str] = []
    cache._db.set_trace_callback(statements.append)
    assert cache.get("unknown/0") is None and statements == []
    hit = cache.get("known/0")
    assert hit is not None and hit.text == "t" and len(statements) == 1
    cache.close()
    reopened = CallCache(tmp_path / "calls.sqlite")  # the keys are read when the cache opens
    assert reopened.get("known/0") is not None
    reopened.close()
