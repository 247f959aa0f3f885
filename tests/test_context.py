"""Context windows end to end (issue 10, item 1): the fake server refuses like vLLM, `LLM` clamps
`max_tokens` to what each prompt leaves, Reasoning Cache keeps the end of a reasoning too long to
summarise, Nomos drops its lowest-scored solutions from a consolidation that does not fit, and the
shipped QED-Nano recipes run RC and Nomos to completion with paper-length outputs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from scaffold_script import PROBLEM, kind, run_scaffold, scripted_llm, steps

from qednano.config import find_recipe, read_yaml
from qednano.eval.pipeline import generate
from qednano.llm.client import LLM, Models
from qednano.llm.context import OMITTED, TokenCounter, estimate_tokens, keep_end
from qednano.llm.types import ContextLengthError, ModelConfig, Reply
from qednano.records import Attempt
from qednano.scaffolds.nomos import Nomos
from qednano.scaffolds.reasoning_cache import ReasoningCache
from qednano.store import RunDir
from qednano.testing.fake_server import FakeServer, ScriptedReply, Timing, prompt_tokens

USER = [{"role": "user", "content": "one two three four five six seven eight"}]  # 8 words + 4 = 12 tokens


def server_llm(server: FakeServer, **config: Any) -> LLM:
    settings: dict[str, Any] = {"model": "m", "base_urls": [server.url], "backoff_s": 0.0, "max_retries": 1}
    return LLM(ModelConfig(**{**settings, **config}))


# ---------------------------------------------------------------------------- the fake server


def test_fake_server_refuses_like_vllm() -> None:
    with FakeServer(lambda body: "ok", context_length=100) as server, httpx.Client() as client:
        url = f"{server.url}/chat/completions"
        too_much = client.post(url, json={"model": "m", "messages": USER, "max_tokens": 90})
        fits = client.post(url, json={"model": "m", "messages": USER, "max_tokens": 88})
        long = [{"role": "user", "content": "word " * 200}]
        too_long = client.post(url, json={"model": "m", "messages": long})
    assert too_much.status_code == 400 and fits.status_code == 200 and too_long.status_code == 400
    assert too_much.json()["error"]["message"] == (
        "'max_tokens' or 'max_completion_tokens' is too large: 90. This model's maximum context length is "
        "100 tokens and your request has 12 input tokens (90 > 100 - 12)."
    )
    assert too_long.json()["error"]["message"].startswith(
        "This model's maximum context length is 100 tokens. However, your request has 204 input tokens."
    )
    assert server.refused == 2 and server.replies == 1


def test_fake_server_fill_makes_texts_as_long_as_their_tokens() -> None:
    timing = Timing(mean_tokens=3000, sigma=0.0, time_scale=0.0)
    with FakeServer(lambda body: "\\boxed{7}", timing=timing, fill=0.25) as server, httpx.Client() as client:
        url = f"{server.url}/chat/completions"
        whole = client.post(url, json={"model": "m", "messages": USER}).json()
        cut = client.post(url, json={"model": "m", "messages": USER, "max_tokens": 1000}).json()
    text = whole["choices"][0]["message"]["content"]
    assert whole["usage"]["completion_tokens"] == 3000 == len(text.split())
    head, _, final = text.partition("</think>")
    assert head.startswith("<think>") and final.strip().endswith("\\boxed{7}")
    assert 700 < len(final.split()) < 800  # a quarter of the tokens after the reasoning
    cut_text = cut["choices"][0]["message"]["content"]
    assert cut["choices"][0]["finish_reason"] == "length" and "</think>" not in cut_text
    assert len(cut_text.split()) == cut["usage"]["completion_tokens"] == 1000


# ---------------------------------------------------------------------------- the client


async def test_max_tokens_is_clamped_to_what_the_prompt_leaves() -> None:
    with FakeServer(lambda body: "ok", context_length=1000) as server:
        llm = server_llm(server, context_length=1000, max_tokens=990, min_output_tokens=100)
        completion = await llm.complete(USER)
        await llm.aclose()
    sent = server.bodies[0]["max_tokens"]
    assert sent == 1000 - estimate_tokens(USER) and sent + prompt_tokens(server.bodies[0]) <= 1000
    assert server.refused == 0 and completion.text == "ok"
    assert completion.notes and completion.notes[0].startswith("max_tokens 990 -> ")


async def test_a_prompt_that_cannot_fit_is_refused_before_it_is_sent() -> None:
    with FakeServer(lambda body: "ok", context_length=1000) as server:
        llm = server_llm(server, context_length=1000, max_tokens=990, min_output_tokens=500)
        with pytest.raises(ContextLengthError, match="min_output_tokens"):
            await llm.complete([{"role": "user", "content": "x" * 1800}])
        await llm.aclose()
    assert server.requests == 0 and llm.stats.failures == 1


async def test_the_servers_own_count_clamps_once_more() -> None:
    # The server counts every character as a token: far more than the client's estimate. Its 400
    # names the count, and the call is re-sent once with max_tokens clamped to it.
    def by_chars(request: Any) -> int:
        return sum(len(m["content"]) for m in request["messages"])

    with FakeServer(lambda body: "ok", context_length=1000, count_prompt=by_chars) as server:
        llm = server_llm(server, max_tokens=990, max_retries=0, min_output_tokens=500)  # no context_length set
        completion = await llm.complete([{"role": "user", "content": "y" * 300}])
        await llm.aclose()
    assert [b["max_tokens"] for b in server.bodies] == [990, 700]
    assert server.refused == 1 and completion.text == "ok"
    assert completion.notes == ["max_tokens 990 -> 700: the server counted 300 prompt tokens of 1000"]
    assert llm.stats.failures == 0 and llm.stats.retries == 0


def test_prompt_tokens_are_counted_with_the_models_tokenizer(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": "Prove that for every positive integer n the sum is n(n+1)/2."}]
    expected = len(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"])
    local = TokenCounter(ModelConfig(model=str(tiny_model_dir), engine="transformers"))
    served = TokenCounter(ModelConfig(model="lm-provers/QED-Nano", tokenizer=str(tiny_model_dir)))
    assert local.count(messages) == served.count(messages) == expected and served.exact
    estimated = TokenCounter(ModelConfig(model="lm-provers/QED-Nano"))
    assert not estimated.exact and estimated.count(messages) >= expected


def test_keep_end_keeps_the_longest_end_that_fits() -> None:
    text = "\n".join(f"line {i} of the reasoning" for i in range(1000))
    kept = keep_end(text, lambda t: len(t) <= 5000)
    assert kept.startswith(OMITTED) and text.endswith(kept.removeprefix(OMITTED)) and 4900 < len(kept) <= 5000
    assert kept.removeprefix(OMITTED).startswith("line ")  # cut at a line break
    assert keep_end(text, lambda t: True) == text


# ---------------------------------------------------------------------------- scaffolds shrink


async def test_rc_summary_keeps_the_end_of_a_reasoning_too_long_for_the_window() -> None:
    reasoning = " ".join(f"step{i}" for i in range(30000))  # ~200k characters: ~66k estimated tokens

    def respond(kind: str, messages: list[dict[str, Any]]) -> Reply | str:
        return Reply("final", reasoning, 10, 30000, "stop") if kind == "rc_solve" else "summary"

    policy, _ = scripted_llm(respond, name="policy")
    summarizer, se = scripted_llm(respond, name="summarizer", context_length=32768, min_output_tokens=2048)
    proof, transcript = await run_scaffold(ReasoningCache(turns=2, summary_tokens=2048), Models(policy, summarizer))
    assert proof == "final" and steps(transcript) == ["solve/1", "summarize/1", "solve/2"]
    shown = se.requests[0]["messages"][0]["content"]
    assert OMITTED in shown and "step29999" in shown and "step0 " not in shown  # the end was kept
    assert estimate_tokens(se.requests[0]["messages"]) + 2048 <= 32768
    assert transcript[1].notes[0].startswith("context: kept the last ")
    attempt = Attempt(id="p/0", problem_id="p", sample=0, scaffold="rc", proof=proof, transcript=transcript)
    assert attempt.context_notes == [f"summarize/1: {transcript[1].notes[0]}"]


async def test_nomos_drops_the_lowest_scored_solutions_until_the_consolidation_fits() -> None:
    scores = [7, 2, 5, 1]
    solved = iter(range(4))

    def respond(kind: str, messages: list[dict[str, Any]]) -> str:
        text = messages[-1]["content"]
        if kind == "solve":
            return f"proof{next(solved)} " * 2000  # ~4.7k estimated tokens each
        if kind == "score":
            i = next(i for i in range(4) if f"proof{i} " in text)
            return f"feedback \\boxed{{{scores[i]}}}"
        if kind == "consolidate":
            return "<keep>[1, 2]</keep>"
        return "<verdict>1</verdict>"

    llm, _ = scripted_llm(respond, context_length=13000, min_output_tokens=1000)
    proof, transcript = await run_scaffold(Nomos(samples=4, keep=4, perfect_target=4), Models(llm))
    consolidate = next(c for c in transcript if c.step == "consolidate")
    assert [re.findall(r"score (\d)", n) for n in consolidate.notes] == [["1"], ["2"]]  # the lowest first
    shown = consolidate.messages[0]["content"]
    assert shown.count("### Submission") == 2 and estimate_tokens(consolidate.messages) + 1000 <= 13000
    assert "proof0 " in shown and "proof2 " in shown and "proof3 " not in shown
    assert proof.startswith("proof0") or proof.startswith("proof2")


# ---------------------------------------------------------------------------- acceptance


def shipped(name: str) -> dict[str, Any]:
    return read_yaml(find_recipe(name))[0]


def paper_script(worst: bool) -> Any:
    """What each scaffold call ends with; the fake server puts paper-length text before it.

    `worst`: every candidate as long as it can be (RC's solves run into `max_tokens`; Nomos'
    proofs are 20k words each), so RC must cut the reasoning it summarises and Nomos must drop
    solutions from its consolidation.
    """
    endings = {"score": "The proof is essentially complete. \\boxed{6}", "consolidate": "<keep>[1, 2, 3]</keep>"}
    longest = {"rc_solve": 10**7, "solve": 100_000} if worst else {}

    def script(body: dict[str, Any]) -> ScriptedReply:
        what = kind(body["messages"])
        content = endings.get(what, "<verdict>1</verdict>" if what == "tournament" else "QED.")
        return ScriptedReply(content=content, completion_tokens=longest.get(what))

    return script


@pytest.mark.parametrize("worst", [False, True], ids=["drawn", "longest"])
@pytest.mark.parametrize("scaffold", ["reasoning_cache", "nomos"])
async def test_shipped_qed_nano_recipes_run_to_completion_in_the_real_window(
    scaffold: str, worst: bool, tmp_path: Path
) -> None:
    model = shipped("models/qed-nano.yaml")
    window = model["context_length"]
    assert window == 262144 and model["max_tokens"] == 229376  # vLLM --max-model-len and the paper's budget
    # QED-Nano's outputs: tens of thousands of tokens, a long tail cut off at max_tokens.
    timing = Timing(slots=64, mean_tokens=60000, sigma=0.9, time_scale=0.0)
    with FakeServer(paper_script(worst), timing=timing, fill=0.2, context_length=window, seed=1) as server:
        config = {**model, "name": "qed-nano", "base_urls": [server.url], "api_key_env": None, "backoff_s": 0.0}
        store = RunDir(tmp_path / "run")
        llm = LLM(ModelConfig(**config), store.cache)
        recipe = shipped(f"scaffolds/{scaffold}.yaml")
        run = ReasoningCache(**recipe) if scaffold == "reasoning_cache" else Nomos(**recipe)
        outcome = await generate([PROBLEM], run, Models(llm), store)  # the eval pipeline's generate stage
        await llm.aclose()
    (attempt,) = store.read("attempts.jsonl", Attempt)  # the record as written, notes included
    store.close()
    proof = attempt.proof
    assert outcome.done == 1 and not outcome.failed
    assert server.refused == 0 and llm.stats.failures == 0  # nothing was sent that vLLM would refuse
    assert all(p + b.get("max_tokens", 0) <= window for p, b in zip(server.prompt_counts, server.answered, strict=True))
    assert sum(c.output_tokens for c in attempt.transcript) / len(attempt.transcript) > 10000
    assert len(attempt.transcript) == (5 if scaffold == "reasoning_cache" else len(attempt.transcript))
    notes = " ".join(attempt.context_notes)
    if worst and scaffold == "reasoning_cache":
        assert "context: kept the last" in notes and attempt.truncated and proof == ""
    if worst and scaffold == "nomos":
        assert "context: dropped solution" in notes and max(server.prompt_counts) > 100000
