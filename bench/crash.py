"""Crash run: the chaos eval SIGKILLed at 10 random moments, restarted each time, against an uninterrupted run.

    .venv/bin/python bench/crash.py [--kills 10] [--problems 8] [--samples 2] [--fault-rate 0.1] [--seed 0]

First the eval (`qednano.testing.chaos.write_eval`) runs once without interruption (in process).
Then the same eval, in a fresh folder and against a fresh server, runs as `qednano eval`
subprocesses: each of the first `--kills` passes is killed with SIGKILL after a random number
of answered calls (or at a random moment of start-up), then passes run until one exits 0.
Both servers inject transient faults (429, 5xx, hangs, drops, bad bodies) at `--fault-rate`;
replies are functions of the request, so both runs must end with the same records.

Prints, per pass, the calls answered and those lost in flight at the kill; then records lost
and extra (must be 0), duplicates (must be 0), finished calls re-sent and cached calls
rewritten (must be 0).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

from qednano import cli
from qednano.testing import chaos
from qednano.testing.fake_server import FakeServer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--problems", type=int, default=8)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--fault-rate", type=float, default=0.1)
    ap.add_argument("--max-retries", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="folder to keep the runs in (default: a temporary one)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    folder = Path(args.keep or tempfile.mkdtemp(prefix="qednano-crash-"))
    faults = chaos.fault_mix(args.fault_rate, kinds=chaos.TRANSIENT)
    settings = {"problems": args.problems, "samples": args.samples, "max_retries": args.max_retries, "timeout_s": 1.0}
    start = time.monotonic()
    with FakeServer(chaos.reply, faults=faults, seed=args.seed, hang_s=60) as server:
        reference = chaos.write_eval(folder / "reference", server.url, **settings)
        codes: list[int] = []
        while not codes or (codes[-1] != 0 and len(codes) < 10):
            codes.append(cli.main(["eval", str(reference)]))
    calls = len(chaos.cache_rows(folder / "reference" / "run"))
    with FakeServer(chaos.reply, faults=faults, seed=args.seed + 1, hang_s=60) as server:
        crashed = chaos.write_eval(folder / "crashed", server.url, **settings)
        passes = chaos.eval_passes(
            crashed, server, kills=args.kills, rng=random.Random(args.seed), calls=calls, logs=folder / "logs"
        )
        requests, injected = server.requests, sum(server.faults.values())
    wall = time.monotonic() - start

    want = chaos.records(folder / "reference" / "run")
    got = chaos.records(folder / "crashed" / "run")
    lost, extra = sum((want - got).values()), sum((got - want).values())
    final = chaos.cache_rows(folder / "crashed" / "run")
    again, rewritten = chaos.resent(passes, final)
    check = chaos.check_eval(folder / "crashed" / "run", [f"c{i}" for i in range(args.problems)], args.samples)

    print(f"\ncrash run: {folder}  ({wall:.1f} s)")
    print(f"  reference: {calls} calls, {sum(want.values())} records (exit codes {codes})")
    for i, p in enumerate(passes):
        how = "SIGKILL" if p.killed else f"exit {p.exit_code}"
        print(f"  pass {i:2d}: {how:8s} {len(p.answered):4d} calls answered, {p.unstored} lost in flight")
    kills = sum(p.killed for p in passes)
    print(f"  kills: {kills}; server: {requests} requests, {injected} faulted; cache: {len(final)} calls")
    print(f"  records: {sum(got.values())} (reference {sum(want.values())}); lost {lost}, extra {extra}")
    print(f"  duplicates: {check.duplicates}; missing: {check.lost}; ungraded with a reason: {check.ungraded}")
    print(f"  finished calls re-sent: {again}; cached calls rewritten: {rewritten}")
    ok = kills == args.kills and not (lost or extra or again or rewritten) and check.ok and passes[-1].exit_code == 0
    print(f"  {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
