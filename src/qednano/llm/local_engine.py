"""The `transformers` engine: a local model directory run in-process, on CPU or GPU.

Requests that arrive while a batch is decoding wait in a queue; the next batch takes all of
them (up to `max_batch`, grouped by sampling parameters) and decodes them together, left
padded, in a worker thread so the event loop stays free. Weights load only as safetensors,
and remote code runs only when the model recipe sets `trust_remote_code`. A request with a
`seed` (the model recipe's) samples from a generator of its own, seeded by `call_seed`: each
token is the argmax of its row's logits over the temperature plus Gumbel noise from that row's
generator (`RowNoise`), which is a draw from the softmax, so a fresh run gives the same tokens
whatever the timing and the batch a request shares, while seeded requests still decode
together. (Float rounding differs with the batch's shape, so a token can flip where two
choices tie within about 1e-6; it is rare, and the tests check whole replies.)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qednano.config import find_file
from qednano.llm.types import LLMError, ModelConfig, Reply

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 512
LOADING = threading.Lock()
"""Held while any engine loads its model: transformers' loading (its meta-device init) is not
thread-safe, and an eval of several local models loads them in parallel threads."""


STATIC_CACHE: dict[str, Any] = {"cache_implementation": "static", "disable_compile": True}
"""`generate()` options for a KV cache allocated once per call: the default one grows by concatenation at
every token, which was half the decoding time of the built-in prover on a CPU (bench/local_decode.py); no
auto-compilation, as each call's cache length differs. The local engine and RC training's rollout use it."""


@dataclass
class Pending:
    request: dict[str, Any]
    future: asyncio.Future[Reply]

    @property
    def sampling(self) -> tuple[Any, ...]:
        r = self.request
        seeded = r.get("seed") is not None
        return (r.get("max_tokens") or r.get("max_completion_tokens"), r.get("temperature"), r.get("top_p"), seeded)


class RowNoise:
    """A logits processor: each row's scores over the temperature (top-p filtered) plus Gumbel noise from its own generator.

    With greedy decoding the argmax is then a sample from the row's softmax (the Gumbel-max trick), and
    what a row draws depends only on its seed and step, never on the rows beside it.
    """

    def __init__(self, seeds: list[int], temperature: float, top_p: float) -> None:
        import torch
        from transformers import TopPLogitsWarper

        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        self.temperature = temperature
        self.top_p = TopPLogitsWarper(top_p) if top_p < 1.0 else None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float() / self.temperature
        if self.top_p is not None:
            scores = self.top_p(input_ids, scores)
        width = scores.shape[-1]
        uniform = torch.stack([torch.rand(width, generator=g, dtype=torch.float64) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(1e-300, 1.0 - 1e-16)))
        return scores + gumbel.to(scores.device, scores.dtype)


class LocalEngine:
    """Batches concurrent chat requests into `model.generate` calls."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.queue: asyncio.Queue[Pending] | None = None
        self.worker: asyncio.Task[None] | None = None
        self._loaded: tuple[PreTrainedModel, PreTrainedTokenizerBase] | None = None
        self.repeats: dict[str, int] = {}
        """Seeded requests decoded so far, by request digest (`call_seed`)."""
        self.batches: list[int] = []
        """Size of each batch decoded (for tests and benchmarks)."""

    def load(self) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        with LOADING:
            if self._loaded is None:
                try:
                    import torch

                    # what decoding imports later too: transformers resolves its names lazily, and
                    # resolving one in several worker threads at once can fail (`cannot import name`)
                    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessorList, TopPLogitsWarper
                    from transformers.utils import logging as hf_logging

                    del LogitsProcessorList, TopPLogitsWarper
                except ImportError as err:
                    raise LLMError(
                        "the transformers engine needs the 'local' extra: pip install 'qednano[local]'"
                    ) from err
                hf_logging.disable_progress_bar()
                c = self.config
                device = c.device if c.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
                where = str(find_file(c.model))  # a local folder, a shipped one (the built-in prover), or a hub id
                if not Path(where).is_dir() and (where.count("/") > 1 or where.startswith((".", "/"))):
                    raise LLMError(
                        f"model {c.model!r}: no such folder, here or shipped in the package, and not a hub id "
                        "(namespace/name)"
                    )
                tok = AutoTokenizer.from_pretrained(where, trust_remote_code=c.trust_remote_code)
                tok.padding_side = "left"
                if tok.pad_token is None:
                    tok.pad_token = tok.eos_token
                model = AutoModelForCausalLM.from_pretrained(
                    where,
                    trust_remote_code=c.trust_remote_code,
                    use_safetensors=True,
                    dtype=torch.bfloat16 if device == "cuda" else torch.float32,
                )
                model.to(device)  # type: ignore[arg-type]  # transformers' stubs wrap .to
                model.eval()
                self._loaded = (model, tok)
                log.info("loaded %s on %s", c.model, device)
            return self._loaded

    async def send(self, request: dict[str, Any], timeout: float) -> Reply:
        # One worker per event loop: a worker (and its queue) left by an earlier
        # `asyncio.run` is dead, and requests queued for it would wait forever.
        if (
            self.queue is None
            or self.worker is None
            or self.worker.done()
            or self.worker.get_loop() is not asyncio.get_running_loop()
        ):
            self.queue = asyncio.Queue()
            self.worker = asyncio.create_task(self._run())
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        await self.queue.put(Pending(request, future))
        return await future

    async def _run(self) -> None:
        assert self.queue is not None
        while True:
            first = await self.queue.get()
            await asyncio.sleep(0)  # let requests issued in the same tick join this batch
            batch = [first]
            while not self.queue.empty() and len(batch) < self.config.max_batch:
                batch.append(self.queue.get_nowait())
            groups: dict[tuple[Any, ...], list[Pending]] = {}
            for p in batch:
                groups.setdefault(p.sampling, []).append(p)
            for group in groups.values():
                live = [p for p in group if not p.future.done()]
                if not live:
                    continue
                try:
                    replies = await asyncio.to_thread(self._generate, [p.request for p in live])
                except Exception as err:  # a failed batch fails its callers, not the worker
                    for p in live:
                        if not p.future.done():
                            p.future.set_exception(LLMError(f"local generation failed: {err}"))
                    continue
                for p, reply in zip(live, replies, strict=True):
                    if not p.future.done():
                        p.future.set_result(reply)

    def call_seed(self, request: dict[str, Any]) -> int:
        """The seed of one seeded call: the recipe's seed, the request, and how many identical ones came before
        (so repeated identical requests, such as an RSA population, still differ, the same way on every run)."""
        digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
        repeat = self.repeats[digest] = self.repeats.get(digest, -1) + 1
        return int(hashlib.sha256(f"{digest}/{repeat}".encode()).hexdigest()[:15], 16)

    def _generate(self, requests: list[dict[str, Any]]) -> list[Reply]:
        import torch

        model, tok = self.load()
        from transformers import LogitsProcessorList

        first = requests[0]
        max_new = first.get("max_tokens") or first.get("max_completion_tokens") or DEFAULT_MAX_NEW_TOKENS
        temperature = first.get("temperature", 1.0)
        prompts = [tok.apply_chat_template(r["messages"], add_generation_prompt=True, tokenize=False) for r in requests]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        top_p = first.get("top_p") or 1.0
        sampling: dict[str, Any] = {"do_sample": bool(temperature)}
        if temperature and first.get("seed") is not None:  # each row from its own generator (`RowNoise`)
            seeds = [self.call_seed(r) for r in requests]
            sampling = {
                "do_sample": False,
                "logits_processor": LogitsProcessorList([RowNoise(seeds, temperature, top_p)]),
            }
        elif temperature:
            sampling.update(temperature=temperature, top_p=top_p, top_k=0)
        with torch.inference_mode():
            out = model.generate(  # type: ignore[operator]  # stubs type generate as a Tensor
                # input ids and mask only: some tokenizers add `token_type_ids`, which generate() refuses
                input_ids=enc["input_ids"],
                attention_mask=enc["attention_mask"],
                max_new_tokens=max_new,
                pad_token_id=tok.pad_token_id,
                **STATIC_CACHE,
                **sampling,
            )
        self.batches.append(len(requests))
        new = out[:, enc["input_ids"].shape[1] :]
        # generate() stops at any id of the generation config's eos list (Qwen: <|im_end|> and
        # <|endoftext|>) and pads the finished rows; any of them ends the text, not just the tokenizer's.
        eos = model.generation_config.eos_token_id
        stops = {tok.eos_token_id, *(eos if isinstance(eos, list) else [eos])} - {None}
        replies = []
        for row, mask in zip(new.tolist(), enc["attention_mask"].tolist(), strict=True):
            stop = next((i for i, t in enumerate(row) if t in stops), None)
            ids = row if stop is None else row[:stop]
            replies.append(
                Reply(
                    content=str(tok.decode(ids, skip_special_tokens=True)),
                    reasoning=None,
                    input_tokens=int(sum(mask)),
                    output_tokens=len(ids) + (stop is not None),
                    finish_reason="stop" if stop is not None else "length",
                )
            )
        return replies

    async def aclose(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
            self.worker = self.queue = None
