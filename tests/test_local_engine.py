"""The `transformers` engine through the real `LLM` class, on the tiny random local model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from qednano.llm.client import LLM
from qednano.llm.local_engine import LocalEngine, RowNoise
from qednano.llm.types import ModelConfig

for _module in ("torch", "transformers", "tokenizers", "safetensors"):
    pytest.importorskip(_module, reason=f'the transformers engine needs {_module}: pip install -e ".[local]"')


def local_llm(model_dir: Path, **config: object) -> LLM:
    return LLM(ModelConfig(engine="transformers", model=str(model_dir), device="cpu", max_tokens=6, **config))


def question(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Prove that {i} + {i} is even."}]


async def test_generates_with_the_chat_template(tiny_model_dir: Path) -> None:
    llm = local_llm(tiny_model_dir, temperature=0.0, price_input=1.0, price_output=2.0)
    completion = await llm.complete(question(1))
    await llm.aclose()
    assert completion.input_tokens > 5  # the chat template wrapped the message
    assert 1 <= completion.output_tokens <= 6
    assert completion.finish_reason in ("stop", "length")
    assert completion.truncated == (completion.finish_reason == "length")
    assert completion.cost == pytest.approx((completion.input_tokens + 2 * completion.output_tokens) / 1e6)
    assert llm.stats.sent == 1


async def test_concurrent_requests_are_batched(tiny_model_dir: Path) -> None:
    llm = local_llm(tiny_model_dir, temperature=1.0, max_batch=4, concurrency=16)
    completions = await asyncio.gather(*(llm.complete(question(i)) for i in range(10)))
    await llm.aclose()
    engine = llm.engine
    assert isinstance(engine, LocalEngine)
    assert len(completions) == 10 and sum(engine.batches) == 10
    assert max(engine.batches) == 4  # requests waited for each other instead of running one by one
    assert len(engine.batches) <= 4


def test_engine_survives_a_new_event_loop(tiny_model_dir: Path) -> None:
    """`asyncio.run` twice on one LLM (two CLI stages in one process) must not hang."""
    llm = local_llm(tiny_model_dir, temperature=0.0)

    async def twice() -> int:
        done = await asyncio.wait_for(asyncio.gather(llm.complete(question(1)), llm.complete(question(2))), 60)
        return len(done)

    assert asyncio.run(twice()) == 2
    assert asyncio.run(twice()) == 2


async def test_any_generation_config_eos_ends_the_text(tiny_model_dir: Path) -> None:
    """Real chat models stop on several ids (Qwen: <|im_end|>, <|endoftext|>); each must end the reply."""
    import torch

    llm = local_llm(tiny_model_dir, temperature=0.0)
    engine = llm.engine
    assert isinstance(engine, LocalEngine)
    model, tok = engine.load()
    prompt = tok.apply_chat_template(question(3), add_generation_prompt=True, tokenize=False)
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.inference_mode():
        greedy = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    row = greedy[0, enc["input_ids"].shape[1] :].tolist()
    third = row[2]
    model.generation_config.eos_token_id = [tok.eos_token_id, third]  # now a stop id, like <|endoftext|>
    completion = await llm.complete(question(3))
    await llm.aclose()
    assert completion.finish_reason == "stop" and not completion.truncated
    assert completion.output_tokens == row.index(third) + 1


def test_several_engines_loading_at_once_each_get_real_weights(tiny_model_dir: Path) -> None:
    """An eval of several local models (the built-in miniature's checkpoints) loads them in parallel threads."""
    import threading

    engines = [
        LocalEngine(ModelConfig(engine="transformers", model=str(tiny_model_dir), device="cpu")) for _ in range(3)
    ]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def load(engine: LocalEngine) -> None:
        start.wait()
        try:
            engine.load()
        except BaseException as err:  # collected and asserted on below
            errors.append(err)

    threads = [threading.Thread(target=load, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for e in engines:
        model, _ = e.load()
        assert all(p.device.type == "cpu" for p in model.parameters())


def test_row_noise_samples_each_row_from_its_softmax_at_the_temperature() -> None:
    import torch

    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    rows = 6000
    for temperature, top_p in ((1.0, 1.0), (2.0, 1.0), (1.0, 0.75)):
        noise = RowNoise(list(range(rows)), temperature, top_p)
        picks = noise(torch.zeros(rows, 1, dtype=torch.long), logits.repeat(rows, 1)).argmax(-1)
        expected = torch.softmax(logits / temperature, -1)
        if top_p < 1.0:  # nucleus: the smallest set of tokens holding top_p (0.5 + 0.3), renormalised
            expected = torch.tensor([0.5, 0.3, 0.0, 0.0]) / 0.8
        freq = torch.bincount(picks, minlength=4).double() / rows
        assert torch.allclose(freq, expected.double(), atol=0.02), (temperature, top_p, freq)
    # a row's draws depend on its seed alone, not on the rows beside it
    alone = RowNoise([7], 1.0, 1.0)(torch.zeros(1, 1, dtype=torch.long), logits[None])
    together = RowNoise([3, 7, 9], 1.0, 1.0)(torch.zeros(3, 1, dtype=torch.long), logits.repeat(3, 1))
    assert torch.equal(alone[0], together[1])
