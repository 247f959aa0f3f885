"""How well a built-in prover checkpoint referees RSA's knockout: its match verdicts against the exact ones.

The diagnostic behind the README's RSA figures. On held-out problems, two teacher proofs a
problem (each with one mistake at `--error-rate`, invalid steps included), posed through
`builtin_tournament` exactly as RSA's knockout poses them (`scaffolds/tournament.py`, fenced);
the checkpoint answers, sampled as in the eval (temperature 0.8, 384 tokens), and the exact
referee (the built-in teacher) answers the same prompt. Printed:

- `verdicts`: on the pairs whose scores differ, how often the checkpoint names the better proof,
  names the worse one, or says tie (a tie is settled by a coin, so "better + tie / 2" is the
  share a knockout match goes the right way; a coin alone gets 50%);
- `fault marks`: of the step lines the exact referee marks with a fault, how many the checkpoint
  marks the same (on replies with the exact one's shape);
- `scores`: how often its `score N` lines equal the exact ones.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/referee_probe.py src/qednano/recipes/builtin/prover/sft
"""

from __future__ import annotations

import argparse
import asyncio
import random

from qednano.builtin.check import check
from qednano.builtin.source import BuiltinSource
from qednano.builtin.teacher import answer
from qednano.llm.client import LLM, attempt_scope
from qednano.llm.types import ModelConfig
from qednano.records import Problem
from qednano.scaffolds.tournament import knockout


async def referee(problem: Problem, proofs: list[str], llm: LLM, index: int) -> tuple[str | None, list[str]]:
    """The verdict and the reasoning lines of one match."""
    with attempt_scope(f"{problem.id}/{index}") as scope:
        bracket = await knockout(problem, proofs, llm, random.Random(index), prompt="builtin_tournament")
    return bracket.matches[0].verdict, scope.completions[0].reasoning.splitlines()


async def probe(model: str, problems: list[Problem], error_rate: float) -> None:
    config = dict(max_tokens=384, temperature=0.8, seed=0, reasoning_delimiter="</think>", concurrency=64)
    prover = LLM(ModelConfig(engine="transformers", model=model, max_batch=64, device="cpu", **config))
    exact = LLM(ModelConfig(engine="builtin-teacher", model="builtin-teacher", extra_body={"think": True}, **config))
    pairs = []
    for i, p in enumerate(problems):
        rng = random.Random(i)
        pairs.append([answer(p.statement, rng, error_rate=error_rate)[0] for _ in range(2)])
    matches = list(enumerate(zip(problems, pairs, strict=True)))
    said = await asyncio.gather(*(referee(p, pair, prover, i) for i, (p, pair) in matches))
    truth = await asyncio.gather(*(referee(p, pair, exact, i) for i, (p, pair) in matches))
    await prover.aclose()
    better = worse = tie = 0
    faults = caught = shaped = scored = scores = 0
    for p, pair, (verdict, lines), (_, right) in zip(problems, pairs, said, truth, strict=True):
        a, b = (check(p.statement, p.rubric, text).points for text in pair)
        if a != b:
            best = "1" if (a or 0) > (b or 0) else "2"
            better += verdict == best
            tie += verdict in ("tie", None)
            worse += verdict not in (best, "tie", None)
        if len(lines) == len(right):
            shaped += 1
            for mine, theirs in zip(lines, right, strict=True):
                if theirs.startswith("score"):
                    scores += 1
                    scored += mine == theirs
                elif " by " in theirs and not theirs.endswith(" ok"):
                    faults += 1
                    caught += mine == theirs
    differ = better + worse + tie
    print(f"{model}: {len(problems)} matches, {differ} with a better proof")
    print(
        f"  verdicts: better {better / differ:.0%}, worse {worse / differ:.0%}, tie {tie / differ:.0%}"
        f" -> the match goes right {(better + tie / 2) / differ:.0%} (a coin: 50%)"
    )
    print(f"  fault marks: {caught} of {faults} (replies of the exact shape: {shaped} of {len(problems)})")
    print(f"  scores: {scored} of {scores} equal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", nargs="+", help="prover checkpoint folders")
    parser.add_argument("--problems", type=int, default=120, help="held-out problems, one match each")
    parser.add_argument("--error-rate", type=float, default=0.6)
    args = parser.parse_args()
    problems = BuiltinSource(split="heldout", count=args.problems, difficulty=(1, 6)).load()
    for model in args.model:
        asyncio.run(probe(model, problems, args.error_rate))


if __name__ == "__main__":
    main()
