"""Can the built-in prover's architecture learn associative recall at a given learning rate? A synthetic check.

The skill the first version of the built-in domain needed (rules listed in each problem) and
SFT never taught, which is why the theory moved into the prover's weights (README, "The
built-in prover"): find a key among the problem's lines and copy the word next to it. Here it is alone,
in its plainest form: `pairs` random key-value pairs (keys from 100 ids, values from 99,
as facts and rule names), then 8 queries `: KEY` whose answer is the value; the loss is on
the answers only, and the model is the prover's Qwen3 (`builtin/prover.prover_config` at
its defaults). Chance is log(99) = 4.6 nats before the model narrows the answer
to the values in context, log(pairs) after; recall is learned when the loss falls to 0.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/recall_probe.py --pairs 16 --steps 3000 --lr 3e-4
"""

from __future__ import annotations

import argparse
import random
import time

KEYS = range(10, 110)
VALUES = range(110, 209)
NEWLINE, COLON, QUERIES = 1, 2, 8


def sample(rng: random.Random, pairs: int) -> tuple[list[int], list[int]]:
    keys = rng.sample(KEYS, pairs)
    values = [rng.choice(VALUES) for _ in keys]
    ids: list[int] = []
    labels: list[int] = []
    for k, v in zip(keys, values, strict=True):
        ids += [k, v, NEWLINE]
        labels += [-100] * 3
    for _ in range(QUERIES):
        i = rng.randrange(pairs)
        ids += [COLON, keys[i], values[i]]
        labels += [-100, -100, values[i]]
    return ids, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from transformers import Qwen3ForCausalLM

    from qednano.builtin.prover import prover_config

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    config = prover_config(max(VALUES) + 1)
    model = Qwen3ForCausalLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), args.lr, weight_decay=0.01)
    start = time.perf_counter()
    print(f"pairs {args.pairs}, lr {args.lr:g}, batch {args.batch}: step, loss, answer accuracy, seconds")
    for step in range(args.steps + 1):
        batch = [sample(rng, args.pairs) for _ in range(args.batch)]
        ids = torch.tensor([b[0] for b in batch])
        labels = torch.tensor([b[1] for b in batch])
        out = model(input_ids=ids, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % 100 == 0:
            guess, target = out.logits.argmax(-1)[:, :-1], labels[:, 1:]
            right = (guess == target)[target != -100].float().mean().item()
            print(f"{step:6d} {out.loss.item():6.3f} {right:5.2f} {time.perf_counter() - start:6.0f}", flush=True)


if __name__ == "__main__":
    main()
