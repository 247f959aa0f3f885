"""Chaos and crash runs, small: a multi-scaffold eval with a judge against the fault-injecting server.

The long versions are `bench/chaos.py` and `bench/crash.py`; both use `qednano.testing.chaos`. Here:

- with 20% of calls faulted (every kind), passes of the real `qednano eval` run until one
  exits 0; a problem whose calls all fail in the first pass is left unfinished and done by
  the next; every attempt and grade is on record exactly once, every grade is a score or
  ungraded with its reason, retries stay within their bound and the report counts them;
- the same eval, SIGKILLed three times in subprocesses and restarted, ends with exactly the
  records of an uninterrupted run, and no finished call is sent again.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from qednano import cli
from qednano.records import Completion, Grade
from qednano.testing import chaos
from qednano.testing.fake_server import ErrorReply, FakeServer, ScriptedReply

PROBLEMS = [f"c{i}" for i in range(6)]
SAMPLES = 2


def test_eval_with_a_fifth_of_calls_faulted_completes_with_every_record_once(tmp_path: Path) -> None:
    broken = {"on": True}
    refused = []

    def script(body: dict[str, Any]) -> ScriptedReply | ErrorReply:
        # In the first pass every call about claim 1 fails for good: its items stay unfinished.
        if broken["on"] and "claim 1 " in json.dumps(body["messages"]):
            refused.append(body)
            return ErrorReply(503, "overloaded")
        return chaos.reply(body)

    passes: list[chaos.Pass] = []
    with FakeServer(script, faults=chaos.fault_mix(0.2), seed=3, hang_s=30) as server:
        recipe = chaos.write_eval(tmp_path, server.url, problems=len(PROBLEMS), samples=SAMPLES, timeout_s=0.5)
        codes: list[int] = []
        while len(codes) < 6 and (not codes or codes[-1] != 0):
            before, start = chaos.cache_rows(tmp_path / "run"), len(server.answered)
            codes.append(cli.main(["eval", str(recipe)]))
            after = chaos.cache_rows(tmp_path / "run")
            passes.append(chaos.Pass(server.answered[start:], before, after, killed=False, exit_code=codes[-1]))
            broken["on"] = False

    assert codes[0] == 1 and codes[-1] == 0, codes  # the unfinished items were done by a later pass
    check = chaos.check_eval(tmp_path / "run", PROBLEMS, SAMPLES)
    assert check.ok, check
    assert check.attempts == check.grades == len(PROBLEMS) * SAMPLES * len(chaos.SCAFFOLDS)
    assert check.scored + check.ungraded == check.grades

    injected = sum(server.faults.values())
    assert injected >= 0.1 * server.requests  # the rates did fault about a fifth of the calls
    # Every injected fault but the unclosed reasoning (a finished, truncated call), and every
    # scripted 503, was seen and retried or counted as a failure; every try reached the server once.
    assert refused and check.faults == injected - server.faults["unclosed_reasoning"] + len(refused)
    assert check.calls["sent"] + check.calls["retries"] + check.calls["failures"] == server.requests
    assert check.calls["failures"] >= 1 and check.calls["retries"] >= 1
    assert chaos.resent(passes, chaos.cache_rows(tmp_path / "run")) == (0, 0)

    report = (tmp_path / "run" / "report.md").read_text()
    assert "| Faults | Retries | Failed calls |" in report

    # The checks can fail: a duplicated attempt line and an ungraded grade without a reason.
    cell = chaos.cells(tmp_path / "run")[0]
    attempts = cell / "attempts.jsonl"
    attempts.write_text(attempts.read_text() + attempts.read_text().splitlines()[0] + "\n")
    grades = next((cell / "grades").glob("*.jsonl"))
    first = Grade.model_validate_json(grades.read_text().splitlines()[0])
    silent = first.model_copy(update={"attempt_id": "c0/9", "points": None, "explanation": "", "flags": []})
    grades.write_text(grades.read_text() + silent.model_dump_json() + "\n")
    broken_check = chaos.check_eval(tmp_path / "run", PROBLEMS, SAMPLES)
    assert broken_check.duplicates == 1 and len(broken_check.unexplained) == 1 and not broken_check.ok


def test_sigkilled_eval_restarts_to_the_records_of_an_uninterrupted_run(tmp_path: Path) -> None:
    faults = chaos.fault_mix(0.1, kinds=chaos.TRANSIENT)
    settings: dict[str, Any] = {"problems": len(PROBLEMS), "samples": SAMPLES, "max_retries": 4, "timeout_s": 0.5}
    with FakeServer(chaos.reply, faults=faults, seed=0, hang_s=30) as server:
        reference = chaos.write_eval(tmp_path / "reference", server.url, **settings)
        assert cli.main(["eval", str(reference)]) == 0
    calls = len(chaos.cache_rows(tmp_path / "reference" / "run"))

    with FakeServer(chaos.reply, faults=faults, seed=1, hang_s=30) as server:
        crashed = chaos.write_eval(tmp_path / "crashed", server.url, **settings)
        passes = chaos.eval_passes(crashed, server, kills=3, rng=random.Random(5), calls=calls, logs=tmp_path / "logs")

    assert [p.killed for p in passes[:3]] == [True] * 3 and passes[-1].exit_code == 0
    assert sum(len(p.answered) for p in passes[:3]) > 0  # the kills fell mid-run
    want, got = chaos.records(tmp_path / "reference" / "run"), chaos.records(tmp_path / "crashed" / "run")
    assert got == want  # same attempts and grades, each once
    assert sum(want.values()) == 2 * len(PROBLEMS) * SAMPLES * len(chaos.SCAFFOLDS)
    final = chaos.cache_rows(tmp_path / "crashed" / "run")
    assert len(final) == calls
    assert chaos.resent(passes, final) == (0, 0)  # no finished call was sent again
    # What the server answered beyond the cache was in flight at a kill.
    assert sum(len(p.answered) for p in passes) == calls + sum(p.unstored for p in passes)
    check = chaos.check_eval(tmp_path / "crashed" / "run", PROBLEMS, SAMPLES)
    assert check.ok and check.ungraded >= 1, check  # some grades are ungraded, each with its reason


def test_resent_counts_finished_calls_sent_again() -> None:
    body = {"model": chaos.POLICY, "messages": [{"role": "user", "content": "Prove claim 0."}]}
    other = {"model": chaos.POLICY, "messages": [{"role": "user", "content": "Prove claim 1."}]}

    def row(b: dict[str, Any], text: str) -> str:
        return Completion(step="solve", model=b["model"], messages=b["messages"], text=text).model_dump_json()

    first = {("cell", "k0"): row(body, "a")}
    both = {**first, ("cell", "k1"): row(other, "b")}
    ok = [chaos.Pass([body], {}, first, True, None), chaos.Pass([other], first, both, False, 0)]
    assert chaos.resent(ok, both) == (0, 0)
    again = [*ok[:1], chaos.Pass([body, other], first, both, False, 0)]
    assert chaos.resent(again, both) == (1, 0)
    rewritten = {**both, ("cell", "k0"): row(body, "a, sent again")}
    assert chaos.resent(ok, rewritten) == (0, 1)
