"""The `qednano` command line: dry runs, exit codes, a SIGKILLed run resumed, and the API key kept secret.

The crash test runs the real CLI in a subprocess against the fake server, kills it with
SIGKILL while two calls are in flight, runs it again, and checks that every attempt is
present exactly once and that no call that had finished before the kill was sent again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from qednano.cli import main
from qednano.eval.pipeline import generate
from qednano.llm.client import LLM, Models
from qednano.llm.types import ModelConfig
from qednano.records import Attempt, Problem
from qednano.scaffolds.direct import Direct
from qednano.store import RunDir
from qednano.testing.fake_server import ErrorReply, FakeServer, ScriptedReply

KEY_ENV = "QEDNANO_TEST_API_KEY"
KEY = "sk-test-9f8e7d6c5b4a-do-not-log"
PROBLEMS = [Problem(id=f"p{i}", statement=f"Prove claim {i}.") for i in range(6)]


def write_run(tmp_path: Path, url: str, **extra: Any) -> Path:
    """A problems file and a generate recipe with an inline model served at `url`."""
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(p.model_dump_json() + "\n" for p in PROBLEMS))
    recipe = {
        "run_dir": str(tmp_path / "run"),
        "problems": {"source": "file", "path": str(problems)},
        "models": {
            "policy": {
                "model": "fake-prover",
                "base_urls": [url],
                "api_key_env": KEY_ENV,
                "concurrency": 2,
                "max_retries": 2,
                "backoff_s": 0.01,
            }
        },
        "samples": 2,
        **extra,
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def qednano(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, KEY_ENV: KEY}
    return subprocess.Popen(
        [sys.executable, "-m", "qednano", "-vv", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_dry_run_prints_the_resolved_recipe(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_run(tmp_path, "http://127.0.0.1:9/v1")
    assert main(["generate", str(recipe), "samples=5", "models.policy.temperature=0.3", "--dry-run"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["samples"] == 5
    assert printed["models"]["policy"]["temperature"] == 0.3
    assert printed["models"]["policy"]["max_retries"] == 2  # defaults are filled in: it is the resolved recipe
    assert printed["scaffold"]["name"] == "direct"
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


@pytest.mark.parametrize(
    ("override", "problems_text", "message"),
    [
        ("colour=blue", None, "colour: unknown key"),
        ("samples=zero", None, "samples: Input should be a valid integer"),
        (None, '{"id": "a", "statement": "A"}\n{"id": "b", "statment": "B"}\n', "problems.jsonl:2: statement"),
        (
            "scaffold={name: direct, prompt: /nonexistent/prompt.md}",
            None,
            "prompt file /nonexistent/prompt.md not found",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    override: str | None,
    problems_text: str | None,
    message: str,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeServer() as server:
        recipe = write_run(tmp_path, server.url)
        if problems_text is not None:
            (tmp_path / "problems.jsonl").write_text(problems_text)
        code = main(["generate", str(recipe), *([override] if override else [])])
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert code == 2, err
    assert message in err
    assert server.requests == 0


def test_missing_recipe_and_bad_arguments_exit_2(tmp_path: Path) -> None:
    assert main(["generate", str(tmp_path / "absent.yaml")]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["no-such-command"])
    assert exit_.value.code == 2


def test_sigkilled_run_resumes_without_resending_finished_calls(tmp_path: Path) -> None:
    slow = {"on": True}

    def script(body: dict[str, Any]) -> ScriptedReply:
        n = len(server.bodies)
        # From the 5th call on, the first run's replies hang (until the client dies).
        return ScriptedReply(content=f"proof #{n}", delay_s=30 if slow["on"] and n > 4 else 0)

    with FakeServer(script) as server:
        recipe = write_run(tmp_path, server.url)
        attempts = tmp_path / "run" / "attempts.jsonl"
        run = qednano("generate", str(recipe))
        deadline = time.monotonic() + 60  # a guard against a stuck run, not a timing assertion
        while not (lines(attempts) >= 4 and server.requests >= 6) and time.monotonic() < deadline:
            assert run.poll() is None, run.communicate()[1].decode()
            time.sleep(0.05)
        run.send_signal(signal.SIGKILL)
        _, first_err = run.communicate()
        assert run.returncode == -signal.SIGKILL
        assert lines(attempts) == 4 and server.requests == 6

        with sqlite3.connect(tmp_path / "run" / "calls.sqlite") as db:
            finished = Counter(scope.split("/")[0] for (scope,) in db.execute("SELECT scope FROM calls"))
        assert sum(finished.values()) == 4  # the two hanging calls never finished

        slow["on"] = False
        before = len(server.bodies)
        rerun = qednano("generate", str(recipe))
        _, second_err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, second_err.decode()

    records = RunDir(tmp_path / "run").read("attempts.jsonl", Attempt)
    assert sorted(a.id for a in records) == sorted(f"p{i}/{s}" for i in range(6) for s in range(2))
    assert len({a.proof for a in records}) == 12  # every attempt once, each from its own call
    resent = Counter(b["messages"][0]["content"] for b in server.bodies[before:])
    for problem in PROBLEMS:
        sent_again = sum(n for text, n in resent.items() if problem.statement in text)
        assert sent_again == 2 - finished[problem.id], problem.id  # finished calls were not sent again
    assert len(server.bodies) - before == 12 - 4

    assert all(auth == f"Bearer {KEY}" for auth in server.authorizations)  # the key was in use ...
    for output in (first_err, second_err):
        assert KEY.encode() not in output  # ... yet never logged at -vv
    assert_key_absent(tmp_path / "run")


def assert_key_absent(run_dir: Path) -> None:
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "recipe.yaml" for p in files) and any(p.name == "calls.sqlite" for p in files)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path


async def test_api_key_never_reaches_run_files_or_debug_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    # openai >= 2 sends through httpx2/httpcore2; the legacy names are set too in case.
    for name in ("", "openai", "httpx", "httpcore", "httpx2", "httpcore2", "qednano"):
        caplog.set_level(logging.DEBUG, logger=name)
    store = RunDir(tmp_path / "run")
    store.pin({"models": {"policy": {"model": "m", "api_key_env": KEY_ENV}}})

    def script(body: dict[str, Any]) -> ScriptedReply | ErrorReply:
        if PROBLEMS[3].statement in body["messages"][0]["content"]:
            return ErrorReply(401, "invalid api key")  # servers echo what they got; this one does not
        return ScriptedReply(content="a proof")

    with FakeServer(script, fault_plan=["429", "drop", "500", "invalid_json"]) as server:
        config = ModelConfig(model="m", base_urls=[server.url], api_key_env=KEY_ENV, max_retries=2, backoff_s=0)
        llm = LLM(config, store.cache)
        outcome = await generate(PROBLEMS[:4], Direct(), Models(llm), store)
        await llm.aclose()
    assert set(outcome.failed) == {"p3/0"} and outcome.done == 3  # retries, a failure and successes were logged
    assert sum(server.faults.values()) == 4
    assert server.authorizations[0] == f"Bearer {KEY}"
    for logger in ("openai", "httpcore2", "qednano"):
        assert any(r.name.startswith(logger) for r in caplog.records), logger
    logged = caplog.text + "".join(json.dumps([r.getMessage(), repr(r.args)]) for r in caplog.records)
    assert KEY not in logged
    assert_key_absent(tmp_path / "run")


def test_offline_generate_on_the_tiny_local_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    recipe = write_run(tmp_path, "unused")
    local = {"engine": "transformers", "model": str(tiny_model_dir), "device": "cpu", "max_tokens": 8}
    overrides = [f"models.policy={json.dumps(local)}", "problems.limit=2"]
    assert main(["generate", str(recipe), *overrides]) == 0
    assert main(["generate", str(recipe), *overrides]) == 0  # resumed: nothing left to do
    records = RunDir(tmp_path / "run").read("attempts.jsonl", Attempt)
    assert sorted(a.id for a in records) == ["p0/0", "p0/1", "p1/0", "p1/1"]
    assert all(len(a.transcript) == 1 and a.transcript[0].output_tokens > 0 for a in records)
