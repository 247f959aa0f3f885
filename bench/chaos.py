"""Chaos run: a multi-scaffold eval with a judge against a server that faults 20% of calls.

    .venv/bin/python bench/chaos.py [--problems 12] [--samples 3] [--fault-rate 0.2] [--max-retries 2] [--seed 0]

The eval (`qednano.testing.chaos.write_eval`: direct, reasoning_cache and rsa scaffolds, a proof
judge that sometimes gives no verdict) runs through the real CLI (`qednano eval`) against
`FakeServer` with every fault kind at an equal share of `--fault-rate`. A work item whose
calls fail for good is retried by the next pass; passes run until one exits 0 (bounded).

Prints the faults injected and seen, retries against their bound, failed calls, passes, and
the records: attempts and grades present exactly once (lost and duplicates must be 0), every
grade a score or ungraded with its reason, and the report's counts against the records.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from qednano import cli
from qednano.testing import chaos
from qednano.testing.fake_server import FakeServer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=12)
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--fault-rate", type=float, default=0.2)
    ap.add_argument("--max-retries", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=1.0, help="per-call timeout (s); injected hangs cost this")
    ap.add_argument("--max-passes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="folder to keep the run in (default: a temporary one)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)

    folder = Path(args.keep or tempfile.mkdtemp(prefix="qednano-chaos-"))
    start = time.monotonic()
    with FakeServer(chaos.reply, faults=chaos.fault_mix(args.fault_rate), seed=args.seed, hang_s=60) as server:
        recipe = chaos.write_eval(
            folder,
            server.url,
            problems=args.problems,
            samples=args.samples,
            max_retries=args.max_retries,
            timeout_s=args.timeout,
        )
        codes = []
        for _ in range(args.max_passes):
            codes.append(cli.main(["eval", str(recipe)]))
            if codes[-1] == 0:
                break
    wall = time.monotonic() - start
    check = chaos.check_eval(folder / "run", [f"c{i}" for i in range(args.problems)], args.samples)

    injected = sum(server.faults.values())
    transient = injected - server.faults["unclosed_reasoning"]
    tries = check.calls["sent"] + check.calls["retries"] + check.calls["failures"]
    print(f"\nchaos run: {folder / 'run'}  ({wall:.1f} s)")
    print(
        f"  scaffolds {', '.join(chaos.SCAFFOLDS)}; {args.problems} problems x {args.samples} samples; judge with re-asks"
    )
    print(f"  passes: {len(codes)} (exit codes {codes}); complete: {codes[-1] == 0}")
    print(f"  server: {server.requests} requests, {injected} faulted ({100 * injected / server.requests:.1f}%)")
    print(f"    by kind: {dict(sorted(server.faults.items()))}")
    faults = {k.removeprefix("fault:"): v for k, v in sorted(check.calls.items()) if k.startswith("fault:")}
    print(f"  client: {check.faults} transient faults seen (server injected {transient} retryable): {faults}")
    print(
        f"  calls: {check.calls['sent']} finished, {check.calls['retries']} retries, {check.calls['failures']} failed"
    )
    print(f"    tries {tries} = server requests {server.requests}: {tries == server.requests}")
    print(f"    retry bound (retries <= max_retries x calls, per model and pass): {len(check.over_bound)} over")
    print(
        f"  records: {check.attempts} attempts, {check.grades} grades; lost {check.lost}, duplicates {check.duplicates}"
    )
    print(f"  grades: {check.scored} scored, {check.ungraded} ungraded with a reason, {len(check.unexplained)} neither")
    print(f"  report counts (faults, retries, ungraded) match the records: {not check.report_mismatch}")
    for line in check.over_bound + check.unexplained + check.report_mismatch:
        print(f"    ! {line}")
    ok = check.ok and codes[-1] == 0 and check.faults == transient and tries == server.requests
    print(f"  {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
