"""The chaos and crash harness: a scripted multi-scaffold eval against the fault-injecting server.

Used by `bench/chaos.py`, `bench/crash.py` and `tests/test_chaos.py` to show that no work is
lost or duplicated however the servers fail and however often the process dies:

- `write_eval()` writes an eval recipe (problems, a policy and a judge served by a
  `FakeServer`, the `direct`, `reasoning_cache` and `rsa` scaffolds, a proof judge);
- `reply()` is the server's script: every reply is a function of the request alone, so two
  runs of the same eval, however interrupted, must end with the same records. A quarter of
  the judge's first replies carry no verdict (re-asked once; some stay ungraded);
- `check_eval()` reads a finished run: attempts and grades present exactly once, every grade
  a score or ungraded with its reason, the retry bound of every model in every pass, and the
  report's fault, retry and ungraded counts against the run's `call_stats.jsonl`;
- `records()`, `cache_rows()` and `resent()` compare an interrupted run with an uninterrupted
  one and count the finished calls a restarted run sent again.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qednano.llm.cache import prompt_digest
from qednano.records import Attempt, Grade, Problem
from qednano.store import read_jsonl
from qednano.testing.fake_server import FakeServer, ScriptedReply

log = logging.getLogger(__name__)

POLICY = "chaos-prover"
JUDGE = "chaos-judge"
SCAFFOLDS: dict[str, dict[str, Any]] = {
    "direct": {"name": "direct"},
    "reasoning_cache": {"name": "reasoning_cache", "turns": 2},
    "rsa": {"name": "rsa", "population": 3, "k": 2, "rounds": 1},
}
TOURNAMENT = "You are judging two candidate proofs"
"""A phrase of the bundled tournament prompt (`prompts/tournament.md`)."""
TRANSIENT = ("429", "500", "502", "503", "hang", "drop", "truncated", "invalid_json", "empty_choices")
"""Faults a client retries; `unclosed_reasoning` instead changes the reply (a truncated call)."""


def fault_mix(rate: float, *, kinds: tuple[str, ...] = (*TRANSIENT, "unclosed_reasoning")) -> dict[str, float]:
    """`rate` spread evenly over `kinds` (the `faults=` of a `FakeServer`)."""
    return {kind: rate / len(kinds) for kind in kinds}


def digest(body: dict[str, Any]) -> str:
    """sha256 of the model and the messages of a request (or of a recorded Completion)."""
    return prompt_digest(body.get("model"), body.get("messages"))


def reply(body: dict[str, Any]) -> ScriptedReply:
    """The reply to one request, a function of the request alone (see the module docstring)."""
    d = digest(body)
    n = int(d[:8], 16)
    messages = body.get("messages") or [{}]
    last = str(messages[-1].get("content", ""))
    if body.get("model") == JUDGE:
        if len(messages) > 1:  # the follow-up after a reply without a verdict
            text = f"<points>{n % 8}</points>" if n % 3 else "I still cannot settle on a score."
        elif n % 4 == 0:
            text = "The argument is hard to follow; I cannot settle on a score."
        else:
            text = f"Step 2 is justified and the induction closes. <points>{n % 8}</points>"
        return ScriptedReply(content=f"<think>Checking each step ({d[:6]}).</think>{text}")
    if TOURNAMENT in last:
        return ScriptedReply(content=f"<think>Comparing.</think>Both are close. <verdict>{1 + n % 2}</verdict>")
    return ScriptedReply(content=f"<think>Try small cases ({d[:6]}).</think>Proof {d[:10]}: by induction, it holds.")


def write_eval(
    folder: Path,
    url: str,
    *,
    problems: int = 6,
    samples: int = 2,
    max_retries: int = 2,
    timeout_s: float = 1.0,
    concurrency: int = 8,
) -> Path:
    """Write `problems.jsonl` and `eval.yaml` (run directory `folder/run`) into `folder`; returns the recipe."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "problems.jsonl"
    rubric = "1. [4 pts] Sets up the induction.\n2. [3 pts] Closes the inductive step."
    lines = [Problem(id=f"c{i}", statement=f"Prove claim {i} for every n.", rubric=rubric) for i in range(problems)]
    data.write_text("".join(p.model_dump_json() + "\n" for p in lines), encoding="utf-8")

    def model(name: str) -> dict[str, Any]:
        return {
            "model": name,
            "base_urls": [url],
            "concurrency": concurrency,
            "max_retries": max_retries,
            "backoff_s": 0.001,
            "max_backoff_s": 0.02,
            "timeout_s": timeout_s,
            "reasoning_delimiter": "</think>",
            "max_tokens": 512,
            "temperature": 1.0,
            "price_input": 1.0,
            "price_output": 4.0,
        }

    recipe = {
        "run_dir": str(folder / "run"),
        "benchmarks": {
            "claims": {
                "problems": {"source": "file", "path": str(data)},
                "judge": {"kind": "proof", "style": "simple", "max_reasks": 1, "label": "chaos"},
                "models": {"judge": model(JUDGE)},
            }
        },
        "models": {"prover": model(POLICY)},
        "scaffolds": SCAFFOLDS,
        "samples": samples,
        "title": "chaos",
    }
    path = folder / "eval.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def cells(run: Path) -> list[Path]:
    """The cell run directories of an eval run, in a stable order."""
    return sorted(p.parent for p in run.rglob("recipe.yaml") if p.parent != run)


@dataclass
class Check:
    """What `check_eval` found in a run; the figures the benches print."""

    attempts: int = 0
    grades: int = 0
    lost: int = 0
    """Attempts or grades the recipe asks for that are not on record."""
    duplicates: int = 0
    """Records on record more than once (extra copies)."""
    scored: int = 0
    ungraded: int = 0
    unexplained: list[str] = field(default_factory=list)
    """Grades that are neither a score in range nor ungraded with a reason."""
    calls: Counter[str] = field(default_factory=Counter)
    """`sent`, `cached`, `retries`, `failures` and `fault:<kind>`, summed over `call_stats.jsonl`."""
    over_bound: list[str] = field(default_factory=list)
    """`call_stats.jsonl` lines whose retries exceed `max_retries * (sent + failures)`."""
    report_mismatch: list[str] = field(default_factory=list)
    """Report counts (faults, retries, ungraded) that differ from the records."""

    @property
    def faults(self) -> int:
        return sum(v for k, v in self.calls.items() if k.startswith("fault:"))

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicates or self.unexplained or self.over_bound or self.report_mismatch)


def check_eval(run: Path, problem_ids: list[str], samples: int) -> Check:
    """Check a finished eval run (see the module docstring)."""
    check = Check()
    expected = {Attempt.make_id(p, s) for p in problem_ids for s in range(samples)}
    summaries = {}
    if (run / "report.json").is_file():
        report = json.loads((run / "report.json").read_text())
        summaries = {Path(s["path"]).resolve(): s for s in report["summaries"]}
    for cell in cells(run):
        ids = Counter(a.id for a in read_jsonl(cell / "attempts.jsonl", Attempt))
        check.attempts += len(ids)
        check.lost += len(expected - set(ids))
        check.duplicates += sum(n - 1 for n in ids.values())
        grade_files = sorted((cell / "grades").glob("*.jsonl"))
        grades = [g for f in grade_files for g in read_jsonl(f, Grade)]
        graded = Counter((g.judge, g.attempt_id) for g in grades)
        check.grades += len(graded)
        missing_grades = sum(1 for a in ids for f in grade_files if (f.stem, a) not in graded)
        check.lost += missing_grades if grade_files else len(ids)
        check.duplicates += sum(n - 1 for n in graded.values())
        ungraded_here = 0
        for g in grades:
            if g.points is None:
                ungraded_here += 1
                if not (g.explanation.startswith("ungraded") and g.flags):
                    check.unexplained.append(f"{cell}: {g.attempt_id}: ungraded without a reason")
            elif not 0 <= g.points <= g.max_points:
                check.unexplained.append(f"{cell}: {g.attempt_id}: points {g.points} out of range")
            else:
                check.scored += 1
        check.ungraded += ungraded_here
        here: Counter[str] = Counter()
        for line in (
            (cell / "call_stats.jsonl").read_text().splitlines() if (cell / "call_stats.jsonl").exists() else []
        ):
            t = json.loads(line)
            tries = t["sent"] + t["failures"]
            if t["retries"] > t["max_retries"] * tries:
                check.over_bound.append(f"{cell}: {line}")
            here.update({k: t[k] for k in ("sent", "cached", "retries", "failures")})
            here.update({f"fault:{k}": v for k, v in t["faults"].items()})
        check.calls.update(here)
        summary = summaries.get(cell.resolve())
        if summary is None:
            check.report_mismatch.append(f"{cell}: not in report.json")
            continue
        shown = summary["calls"]
        faults = sum(v for k, v in here.items() if k.startswith("fault:"))
        for name, got, want in (
            ("faults", shown.get("faults", 0), faults),
            ("retries", shown.get("retries", 0), here["retries"]),
            ("ungraded", summary["ungraded"], ungraded_here),
        ):
            if got != want:
                check.report_mismatch.append(f"{cell}: report {name} {got}, records {want}")
    return check


# ---------------------------------------------------------------------------------- crash runs


def comparable(record: Attempt | Grade) -> str:
    """A record as canonical JSON without what legitimately differs between runs: wall times,
    cache replay marks, and the order in which concurrent calls finished (whole messages: a stored
    transcript's references to earlier calls depend on that order)."""
    data = record.model_dump()
    calls = [{k: v for k, v in c.items() if k not in ("seconds", "cached")} for c in data["transcript"]]
    data["transcript"] = sorted(calls, key=lambda c: json.dumps(c, sort_keys=True))
    return json.dumps(data, sort_keys=True)


def records(run: Path) -> Counter[str]:
    """Every attempt and grade of an eval run, as `cell/file: comparable record`, with multiplicity."""
    out: Counter[str] = Counter()
    for cell in cells(run):
        name = cell.relative_to(run)
        for a in read_jsonl(cell / "attempts.jsonl", Attempt):
            out[f"{name}/attempts: {comparable(a)}"] += 1
        for file in sorted((cell / "grades").glob("*.jsonl")):
            for g in read_jsonl(file, Grade):
                out[f"{name}/grades/{file.stem}: {comparable(g)}"] += 1
    return out


def cache_rows(run: Path) -> dict[tuple[str, str], str]:
    """(cell, cache key) -> the request's `digest()`, a space, and the stored completion JSON, over every cell."""
    rows = {}
    for cell in cells(run):
        db_path = cell / "calls.sqlite"
        if not db_path.is_file():
            continue
        db = sqlite3.connect(db_path)
        try:
            for key, completion, prompt in db.execute("SELECT key, completion, prompt FROM calls"):
                rows[str(cell), key] = f"{prompt or digest(json.loads(completion))} {completion}"
        finally:
            db.close()
    return rows


def contents(rows: dict[tuple[str, str], str]) -> Counter[str]:
    """The request contents (model and messages, as `digest()`) of cached calls, with multiplicity.

    A row is `cache_rows()`'s digest and completion, or a completion JSON that holds its messages."""
    return Counter(digest(json.loads(row)) if row.startswith("{") else row.split(" ", 1)[0] for row in rows.values())


@dataclass
class Pass:
    """One run of the CLI over the eval: the calls the server answered and the caches around it."""

    answered: list[dict[str, Any]]
    before: dict[tuple[str, str], str]
    after: dict[tuple[str, str], str]
    killed: bool
    exit_code: int | None

    @property
    def unstored(self) -> int:
        """Answered calls whose reply never reached the cache: in flight when the process died."""
        return len(self.answered) - (len(self.after) - len(self.before))


def resent(passes: list[Pass], final: dict[tuple[str, str], str]) -> tuple[int, int]:
    """(finished calls sent again, cached calls rewritten) over the passes of an interrupted run.

    A pass may send a request only for calls not yet in a cache when it starts: per request
    content, the pass's answered count may not exceed the final count minus the count cached
    before the pass (exact when contents are unique, a bound when identical requests repeat).
    And a cached row, once written, must never change (a re-sent call would rewrite it).
    """
    total = contents(final)
    again = 0
    for p in passes:
        cached = contents(p.before)
        sent = Counter(digest(body) for body in p.answered)
        again += sum(max(0, n - (total[r] - cached[r])) for r, n in sent.items())
    rewritten = len({key for p in passes for key, row in p.after.items() if final.get(key) != row})
    return again, rewritten


def settle(server: FakeServer, quiet_s: float = 0.2, guard_s: float = 30.0) -> None:
    """Wait until the server has read and answered everything a dead client left in its sockets."""
    seen, quiet_since, start = -1, time.monotonic(), time.monotonic()
    while time.monotonic() - start < guard_s:
        if len(server.bodies) != seen or server.inflight:
            seen, quiet_since = len(server.bodies), time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.02)


def eval_passes(
    recipe: Path,
    server: FakeServer,
    *,
    kills: int,
    rng: random.Random,
    calls: int,
    logs: Path,
    max_passes: int = 8,
    guard_s: float = 300.0,
) -> list[Pass]:
    """Run `qednano eval RECIPE` in subprocesses: `kills` passes SIGKILLed at random moments, then
    passes until one exits 0 (at most `max_passes`).

    A kill comes after a random number of calls answered in the pass (spread so the kills cover
    the whole run of about `calls` calls), or, one time in five, at a random time in the first
    0.7 s (start-up: loading, pinning recipes, writing problems, opening caches).
    """
    run = Path(yaml.safe_load(recipe.read_text())["run_dir"])
    logs.mkdir(parents=True, exist_ok=True)
    passes: list[Pass] = []
    for number in range(kills + max_passes):
        killing = number < kills
        before = cache_rows(run)
        start = len(server.answered)
        remaining = max(1, calls - len(before))
        # at most 2/3 of what is left, so the pass cannot finish before its kill
        threshold = rng.randint(1, max(1, 2 * remaining // (kills - number + 2))) if killing else 0
        after_s = rng.uniform(0.05, 0.7) if killing and rng.random() < 0.2 else None
        with open(logs / f"pass-{number}.log", "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "qednano", "eval", str(recipe)], stdout=out, stderr=out)
            began = time.monotonic()
            while killing and proc.poll() is None and time.monotonic() - began < guard_s:
                elapsed = time.monotonic() - began
                if (after_s is not None and elapsed >= after_s) or (
                    after_s is None and len(server.answered) - start >= threshold
                ):
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.005)
            code = proc.wait(timeout=guard_s)
        settle(server)
        killed = code == -signal.SIGKILL
        passes.append(Pass(server.answered[start:], before, cache_rows(run), killed, None if killed else code))
        how = f"killed after {len(passes[-1].answered)} calls" if killed else f"exit {code}"
        log.info("pass %d: %s", number, how)
        if not killing and code == 0:
            break
    return passes
