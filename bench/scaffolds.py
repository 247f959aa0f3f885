"""Scaffold orchestration benchmark: RSA and DSM over many problems against a GPU-like server.

    .venv/bin/python bench/scaffolds.py [--problems 60] [--slots 256] [--time-scale 0.25] [--judge]

The server is `qednano.testing.fake_server.FakeServer` in timing mode: `slots` sequences decode at
once at `rate` tokens per second each, extra requests queue. Reply lengths are log-normal,
drawn from a hash of the request, so every policy meets the same workload; reply texts are
scripted so the scaffolds parse them (verdicts, scores). Times are in model seconds.

With `--judge`, every attempt is also graded (`ProofJudge`, one call) by the same model on
the same server, through the same `LLM` and its concurrency gate, as an eval cell whose
judge shares the policy's server does.

For each scaffold it prints two lower bounds on the makespan, each on its own:

- `capacity`: total output tokens (judge calls included) over the server's capacity
  (`slots * rate`): no schedule finishes sooner on this server;
- `critical`: the critical path, the longest chain of dependent calls of any one problem
  (its attempt's calls, then its judge call), measured by running the same workload on an
  engine with no slot limit: no schedule finishes sooner on any server;

and then, for each policy, its makespan (wall clock of the whole run, in model seconds) and
that makespan over each bound (`/cap`, `/crit`):

- `ours`: the real pipeline (`pipeline.generate`, or `pipeline.generate_and_grade` with a
  judge: one fan-out over all problems, each attempt graded as soon as it is written), the
  real `LLM` over HTTP, its `concurrency` set to the server's slots as a model recipe does;
- `after` (with `--judge` only): the same, grading only once every attempt is written
  (`generate`, then `grade`), as eval cells did before grading streamed;
- `alone` (with `--judge` only): `ours` with no judge, the generation alone; the line under
  the table says how much later `ours` ends with its judge than without, against the length
  of one judge call (the target: within one judge call);
- `baseline`: the original code's policy, 8 problems at a time, each with its own pool of
  8 workers (emulated with asyncio semaphores around the same scaffold code), grading
  after generation; then how many times faster ours is.

Last, the client's cost: CPU seconds of the client's own thread (the event loop that runs
the scaffolds, the `LLM`, the `openai` SDK and the stores; the fake server runs in another
thread) per model call, and the bytes the run directory holds (call cache and records) per
call.

The default server (256 slots, vLLM's classic default `max_num_seqs`) has more capacity
than the baseline's 64 calls in flight can use, and with 60 problems the critical path,
not the capacity, bounds the makespan. The time scale compresses model time; the client's
own CPU cost per call does not shrink with it, so a much smaller `--time-scale` than the
default measures the Python HTTP client rather than the orchestration. Where capacity and
critical path are close (about 128 slots here) first-come-first-served service stays
further from the bound (about 1.2-1.4 in our runs), as no schedule reaches both at once.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import math
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qednano.eval.pipeline import generate, generate_and_grade, grade
from qednano.grading.judge import ProofJudge
from qednano.llm.client import LLM, Models, current_scope
from qednano.llm.openai_engine import OpenAIEngine
from qednano.llm.types import Engine, ModelConfig, Reply
from qednano.records import Attempt, Grade, Problem
from qednano.scaffolds import ScaffoldRun
from qednano.scaffolds.dsm import DSM
from qednano.scaffolds.rsa import RSA
from qednano.store import RunDir
from qednano.testing.fake_server import FakeServer, ScriptedReply, Timing

log = logging.getLogger("bench.scaffolds")

TAG = "bench_call"
SCAFFOLDS: dict[str, ScaffoldRun] = {"rsa": RSA(population=8, k=3, rounds=3), "dsm": DSM()}


@dataclass(frozen=True)
class Workload:
    """Seeded reply lengths and texts, functions of the request alone."""

    mean_tokens: float
    sigma: float
    seed: int

    def draw(self, request: dict[str, Any]) -> tuple[str, int]:
        """(reply text, output tokens) for one request, told apart from its repeats by its tag."""
        tag = request.get(TAG) or request.get("extra_body", {}).get(TAG)
        digest = hashlib.sha256(json.dumps([self.seed, tag, request["messages"]], sort_keys=True).encode()).hexdigest()
        rng = random.Random(digest)
        mu = math.log(self.mean_tokens) - self.sigma**2 / 2
        tokens = max(1, round(rng.lognormvariate(mu, self.sigma)))
        prompt = request["messages"][-1]["content"]
        if prompt.startswith("You are grading a solution"):
            text = f"<overall>Sound.</overall><step>...</step><points>{rng.randint(0, 7)}</points>"
        elif "<verdict>" in prompt:
            text = f"<verdict>{rng.choice('12')}</verdict>"
        elif "final overall score should be" in prompt:
            score = rng.choices(["1", "0.5", "0"], weights=[6, 2, 2])[0]
            text = f"Here is my evaluation of the proof: ... \\boxed{{{score}}}"
        else:  # about as many characters as a real proof of that many tokens, so stored bytes are real
            steps = "\n".join(
                f"Step {k}: from the claims so far ({digest[:16]}) the next one follows." for k in range(tokens // 20)
            )
            text = f"## Solution\nproof {digest[:12]}\n{steps}\n## Self Evaluation\n\\boxed{{1}}"
        return text, tokens


class Tagged:
    """Tags each request with its attempt and its repeat index among identical requests.

    A scaffold sends identical requests on purpose (RSA's N first solves); a real server
    samples each afresh. The tag (sent in the body, ignored by real servers) lets the
    workload draw a different reply for each while staying a function of the request, so
    every policy meets the same workload. Calls are tagged in the order the scaffold makes
    them, which does not depend on the policy.
    """

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.seen: Counter[str] = Counter()

    async def send(self, request: dict[str, Any], timeout: float) -> Reply:
        scope = current_scope()
        key = json.dumps([scope.id if scope else "", request["messages"]], sort_keys=True)
        self.seen[key] += 1
        tag = f"{scope.id if scope else ''}#{self.seen[key]}"
        request = {**request, "extra_body": {**request.get("extra_body", {}), TAG: tag}}
        return await self.inner.send(request, timeout)

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


class Unlimited:
    """An in-process engine with no slot limit: each call takes its decode time, nothing more."""

    def __init__(self, workload: Workload, rate: float, time_scale: float) -> None:
        self.workload, self.rate, self.time_scale = workload, rate, time_scale

    async def send(self, request: dict[str, Any], timeout: float) -> Reply:
        text, tokens = self.workload.draw(request)
        await asyncio.sleep(tokens / self.rate * self.time_scale)
        return Reply(text, None, 10, tokens, "stop")


class PerAttemptPool:
    """The original code's inner thread pool: at most `workers` calls in flight per attempt."""

    def __init__(self, inner: Engine, workers: int) -> None:
        self.inner, self.workers = inner, workers
        self.pools: dict[str, asyncio.Semaphore] = {}

    async def send(self, request: dict[str, Any], timeout: float) -> Reply:
        scope = current_scope()
        key = scope.id if scope else ""
        pool = self.pools.setdefault(key, asyncio.Semaphore(self.workers))
        async with pool:
            return await self.inner.send(request, timeout)

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


JUDGE = ProofJudge(style="simple")
Grading = str
"""`none` (generation only), `stream` (each attempt graded once written) or `after` (all graded at the end)."""


@dataclass
class Run:
    """One policy's run: wall seconds, the client thread's CPU seconds, calls sent, run-directory bytes,
    and the output tokens of each judge call."""

    wall: float
    cpu: float
    calls: int
    bytes: int
    judge_tokens: list[int]


async def run_policy(
    scaffold: ScaffoldRun,
    problems: list[Problem],
    make_engine: Callable[[ModelConfig], Engine],
    *,
    max_inflight: int,
    concurrency: int,
    grading: Grading,
) -> Run:
    """One `generate` (and grading) over all problems, in a fresh run directory."""
    config = ModelConfig(name="bench", model="fake-model", concurrency=concurrency, max_retries=0, timeout_s=3600)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunDir(Path(tmp) / "run")
        llm = LLM(config, store.cache, engine=make_engine(config))
        models = Models(llm)
        cpu, start = time.thread_time(), time.monotonic()
        if grading == "stream":
            made, marked = await generate_and_grade(
                problems, scaffold, models, JUDGE, llm, store, max_inflight=max_inflight
            )
        else:
            made = await generate(problems, scaffold, models, store, max_inflight=max_inflight)
            marked = made
            if grading == "after":
                attempts = store.read("attempts.jsonl", Attempt)
                marked = await grade(problems, attempts, JUDGE, llm, store, max_inflight=max_inflight)
        wall, cpu = time.monotonic() - start, time.thread_time() - cpu
        await llm.aclose()
        store.close()
        size = sum(f.stat().st_size for f in store.path.rglob("*") if f.is_file())
        judged = [c.output_tokens for g in store.read(f"grades/{JUDGE.name}.jsonl", Grade) for c in g.transcript]
    for outcome in (made, marked):
        if outcome.failed:
            raise RuntimeError(f"{len(outcome.failed)} items failed: {next(iter(outcome.failed.values()))}")
    return Run(wall, cpu, llm.stats.sent, size, judged)


def on_server(
    scaffold: ScaffoldRun, problems: list[Problem], timing: Timing, workload: Workload, policy: str, judge: bool
) -> tuple[Run, int]:
    """(the run, in model seconds, and the server's output tokens) of one policy on a fresh server."""

    def script(request: dict[str, Any]) -> ScriptedReply:
        text, tokens = workload.draw(request)
        return ScriptedReply(content=text, completion_tokens=tokens)

    baseline = policy == "baseline"
    with FakeServer(script, timing=timing) as server:

        def engine(config: ModelConfig) -> Engine:
            http = OpenAIEngine(config.model_copy(update={"base_urls": [server.url]}))
            return Tagged(PerAttemptPool(http, 8) if baseline else http)

        run = asyncio.run(
            run_policy(
                scaffold,
                problems,
                engine,
                max_inflight=8 if baseline else len(problems),
                concurrency=64 if baseline else timing.slots,
                grading={"ours": "stream", "alone": "none"}.get(policy, "after") if judge else "none",
            )
        )
        report = server.timing_report()
    run.wall /= timing.time_scale
    return run, report.output_tokens


def critical_path(
    scaffold: ScaffoldRun, problems: list[Problem], workload: Workload, rate: float, scale: float, judge: bool
) -> float:
    """Longest dependency chain over all problems (its judge call included), in model seconds (no slot limit).

    Measured at the same time scale as the server runs, so the small per-call overhead of
    the event loop and the call cache weighs the same in both.
    """
    run = asyncio.run(
        run_policy(
            scaffold,
            problems,
            lambda config: Tagged(Unlimited(workload, rate, scale)),
            max_inflight=len(problems),
            concurrency=100_000,
            grading="stream" if judge else "none",
        )
    )
    return run.wall / scale


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", type=int, default=60)
    p.add_argument("--slots", type=int, default=256, help="sequences decoded at once")
    p.add_argument("--rate", type=float, default=100.0, help="tokens per second of one sequence")
    p.add_argument("--mean-tokens", type=float, default=500.0)
    p.add_argument("--sigma", type=float, default=0.6, help="log-normal shape of reply lengths")
    p.add_argument("--time-scale", type=float, default=0.25, help="wall seconds per model second")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scaffolds", nargs="+", default=list(SCAFFOLDS), choices=list(SCAFFOLDS))
    p.add_argument("--judge", action="store_true", help="grade every attempt on the same server (one judge call)")
    p.add_argument(
        "--policies",
        nargs="+",
        default=["ours", "after", "alone", "baseline"],
        choices=["ours", "after", "alone", "baseline"],
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    timing = Timing(slots=args.slots, tokens_per_s=args.rate, time_scale=args.time_scale)
    workload = Workload(args.mean_tokens, args.sigma, args.seed)
    problems = [Problem(id=f"p{i:03d}", statement=f"Problem {i}: prove the claim.") for i in range(args.problems)]
    print(
        f"{args.problems} problems; server: {args.slots} slots x {args.rate:g} tok/s; "
        f"replies log-normal(mean {args.mean_tokens:g}, sigma {args.sigma:g}); times in model seconds"
    )
    policies = ["ours"] + [p for p in args.policies if p != "ours" and (args.judge or p not in ("after", "alone"))]
    head = f"{'scaffold':8} {'calls':>6} {'tokens':>9} {'capacity':>9} {'critical':>9}"
    head += "".join(f" {p:>9} {'/cap':>6} {'/crit':>6}" for p in policies)
    print(head + f" {'speedup':>8} {'cpu ms/call':>12} {'kB/call':>8}")
    for name in args.scaffolds:
        scaffold = SCAFFOLDS[name]
        runs = {}
        tokens = 0
        for policy in policies:
            runs[policy], used = on_server(scaffold, problems, timing, workload, policy, args.judge)
            if policy != "alone":  # the generation alone makes no judge calls
                assert tokens in (0, used), "every policy must run the same workload"
                tokens = used
        capacity = tokens / (args.slots * args.rate)
        critical = critical_path(scaffold, problems, workload, args.rate, args.time_scale, args.judge)
        ours = runs["ours"]
        line = f"{name:8} {ours.calls:6d} {tokens:9d} {capacity:9.1f} {critical:9.1f}"
        line += "".join(f" {r.wall:9.1f} {r.wall / capacity:6.3f} {r.wall / critical:6.3f}" for r in runs.values())
        speedup = f"{runs['baseline'].wall / ours.wall:7.2f}x" if "baseline" in runs else f"{'–':>8}"
        line += f" {speedup} {1000 * ours.cpu / ours.calls:12.2f}"
        print(line + f" {ours.bytes / ours.calls / 1000:8.1f}")
        if "alone" in runs and ours.judge_tokens:
            call = statistics.mean(ours.judge_tokens) / args.rate
            print(
                f"  {name}: with its judge, ours ends {ours.wall - runs['alone'].wall:.1f} s after the generation alone"
                f" ({runs['alone'].wall:.1f} s); one judge call takes {call:.1f} s on average,"
                f" {max(ours.judge_tokens) / args.rate:.1f} s at most"
            )


if __name__ == "__main__":
    main()
