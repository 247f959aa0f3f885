"""The eval half in real use (issue 11): anyone's graded proofs imported by a recipe, one writer per run,
exit codes, the first failure on a full disk, override errors, offline hub runs.

Each test runs the real CLI (in-process or in a subprocess) against the loopback fake
server and real files.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import qednano
from qednano import cli
from qednano import config as cfg
from qednano.config import ConfigError
from qednano.eval.cells import EvalRecipe
from qednano.eval.pipeline import generate
from qednano.eval.run import run_jobs
from qednano.llm.client import LLM, Models
from qednano.llm.local_engine import LocalEngine
from qednano.llm.types import ModelConfig
from qednano.records import Attempt, Grade, Problem
from qednano.report.build import load_cells, load_problems
from qednano.scaffolds.direct import Direct
from qednano.store import RunDir
from qednano.testing.fake_server import ErrorReply, FakeServer

SRC = Path(qednano.__file__).resolve().parents[1]
"""The source the subprocesses run: the one these tests import."""

# ---------------------------------------------------------------------- item 1: nested tables


def nested_rows() -> list[dict[str, Any]]:
    """Graded proofs as another project publishes them: the proof and both ratings nested under `model_prediction`."""
    problems = [
        {"uid": "alg-1", "text": "Prove that $1+1=2$.", "meta": {"reference": "Peano.", "scheme": "7 for a proof."}},
        {"uid": "nt-2", "text": "Prove that there are infinitely many primes.", "meta": {"reference": "Euclid."}},
    ]
    rows = []
    for p in problems:
        for steps, human, self_rating in ((7, 7, 7), (3, 2, 6), (0, 0, 1)):
            rows.append(
                {
                    "problem": p,
                    "model_prediction": {
                        "proof": f"A proof in {steps} steps.",
                        "human_rating": human,
                        "self_rating": self_rating,
                    },
                }
            )
    return rows


def nested_recipe(tmp_path: Path, data: Path, url: str, **columns: Any) -> Path:
    recipe = tmp_path / "meta.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(tmp_path / "run"),
                "problems": {
                    "source": "table",
                    "path": str(data),
                    "columns": {
                        "id": "problem.uid",
                        "statement": "problem.text",
                        "solution": "problem.meta.reference",
                        "proof": "model_prediction.proof",
                        "human_points": "model_prediction.human_rating",
                        "graders": {"self-rating": "model_prediction.self_rating"},
                        **columns,
                    },
                },
                "models": {"judge": {"model": "fake-judge", "base_urls": [url], "max_retries": 0}},
                "judges": [{"kind": "proof", "style": "simple", "label": "judge"}],
                "attempts": "human",
            }
        )
    )
    return recipe


def judge_by_steps(body: dict[str, Any]) -> str:
    steps = re.search(r"A proof in (\d) steps", body["messages"][0]["content"])
    assert steps is not None
    return f"<assessment>ok</assessment><points>{steps.group(1)}</points>"


def test_nested_graded_jsonl_with_a_second_grader_imports_by_recipe_and_the_report_shows_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "graded.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in nested_rows()))
    with FakeServer(judge_by_steps) as server:
        recipe = nested_recipe(tmp_path, data, server.url)
        assert cli.main(["grade", str(recipe)]) == 0
        assert server.requests == 6
    run = tmp_path / "run"
    attempts = [Attempt.model_validate_json(line) for line in (run / "attempts.jsonl").read_text().splitlines()]
    assert [a.human_points for a in attempts] == [7, 2, 0, 7, 2, 0]
    imported = [
        Grade.model_validate_json(line) for line in (run / "grades" / "self-rating.jsonl").read_text().splitlines()
    ]
    assert [g.points for g in imported] == [7, 6, 1, 7, 6, 1]
    table = (run / "agreement.md").read_text()
    assert "| judge-" in table and "| self-rating | imported | 6 |" in table
    assert cli.main(["report", str(run)]) == 0
    report = (run / "report.md").read_text()
    agreement = report[report.index("## Grader agreement") : report.index("## Table 1")]
    # both graders against the human points: the judge (7,3,0 vs 7,2,0) and the self-rating (7,6,1 vs 7,2,0)
    assert re.search(r"\| judge-\w+ \| simple \| 6 \|", agreement) and "| self-rating | imported | 6 |" in agreement
    cell = load_cells([run])[0]
    assert cell.problems["alg-1"].statement == "Prove that $1+1=2$." and cell.problems["alg-1"].solution == "Peano."


def test_a_missing_table_column_says_no_such_column_and_lists_the_columns(tmp_path: Path) -> None:
    data = tmp_path / "graded.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in nested_rows()))
    recipe = nested_recipe(tmp_path, data, "http://127.0.0.1:9/v1", proof="model_prediction.prooof")
    loaded = cfg.load(recipe, [], cli.RunRecipe)
    with pytest.raises(ConfigError, match=r"model_prediction.prooof: no such column.*model_prediction\.proof"):
        loaded.problems.load()
    recipe = nested_recipe(tmp_path, data, "http://127.0.0.1:9/v1", graders={"other": "model_prediction.other"})
    with pytest.raises(ConfigError, match=r"model_prediction.other: no such column in any row"):
        cfg.load(recipe, [], cli.RunRecipe).problems.load()


# ---------------------------------------------------------- item 2: report loads graded problems


def graded_file_rows() -> list[dict[str, Any]]:
    problem = {"id": "p1", "statement": "Prove that $1+1=2$.", "solution": "Peano.", "rubric": "7 for a proof."}
    return [{"problem": problem, "proof": f"A proof in {s} steps.", "human_points": h} for s, h in ((7, 7), (3, 2))]


def test_report_loads_graded_problems_beside_the_run_from_any_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "graded.jsonl").write_text("".join(json.dumps(r) + "\n" for r in graded_file_rows()))
    recipe = {"run_dir": "runs/meta", "problems": {"source": "graded", "path": "data/graded.jsonl"}}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the report is built from another directory than the run was made in
    problems = load_problems(project / "runs" / "meta", recipe)
    assert [(p.statement, p.rubric, p.solution) for p in problems] == [
        ("Prove that $1+1=2$.", "7 for a proof.", "Peano.")
    ]


# ------------------------------------------------------------- item 3: validate before pinning


def test_a_grade_run_that_fails_validation_pins_nothing(tmp_path: Path) -> None:
    data = tmp_path / "graded.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in graded_file_rows()))
    base = {"run_dir": str(tmp_path / "run"), "problems": {"source": "graded", "path": str(data)}, "attempts": "human"}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({**base, "models": {}, "judges": [{"kind": "proof"}]}))
    assert cli.main(["grade", str(recipe)]) == 2  # no judge model
    assert not (tmp_path / "run" / "recipe.yaml").exists()
    with FakeServer(judge_by_steps) as server:
        fixed = {**base, "models": {"judge": {"model": "j", "base_urls": [server.url]}}, "judges": [{"kind": "proof"}]}
        recipe.write_text(yaml.safe_dump(fixed))
        assert cli.main(["grade", str(recipe)]) == 0  # the corrected recipe is not "a different recipe"
        assert server.requests == 2


# -------------------------------------------------------------- item 4: one writer per run dir


def eval_recipe(tmp_path: Path, url: str) -> Path:
    problems = tmp_path / "problems.jsonl"
    problems.write_text(
        "".join(Problem(id=f"p{i}", statement=f"Prove claim {i}.").model_dump_json() + "\n" for i in range(2))
    )
    model = {"model": "m", "base_urls": [url], "max_retries": 0, "backoff_s": 0}
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(tmp_path / "runs"),
                "benchmarks": {
                    "b": {
                        "problems": {"source": "file", "path": str(problems)},
                        "judge": {"kind": "proof", "style": "simple"},
                        "models": {"judge": model},
                    }
                },
                "models": {"m": model},
            }
        )
    )
    return recipe


def test_a_second_eval_on_a_locked_run_directory_exits_2_naming_the_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom qednano.store import RunDir\nheld = RunDir(sys.argv[1])\nheld.lock()\nprint('locked', flush=True)\n"
            "time.sleep(60)",
            str(tmp_path / "runs"),
        ],
        env={**os.environ, "PYTHONPATH": str(SRC)},
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        with FakeServer(lambda body: "<points>7</points>") as server:
            done = subprocess.run(
                [sys.executable, "-m", "qednano", "eval", str(eval_recipe(tmp_path, server.url))],
                env={**os.environ, "PYTHONPATH": str(SRC)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert server.requests == 0
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2, done.stderr
    assert f"pid {holder.pid}" in done.stderr and "another qednano process" in done.stderr
    assert not list((tmp_path / "runs").rglob("attempts.jsonl"))


def test_grade_and_report_ignore_duplicate_attempt_ids_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text(Problem(id="p0", statement="Prove it.").model_dump_json() + "\n")
    run = tmp_path / "run"
    run.mkdir()
    twice = Attempt(id="p0/0", problem_id="p0", sample=0, scaffold="direct", proof="A proof in 5 steps.")
    (run / "attempts.jsonl").write_text((twice.model_dump_json() + "\n") * 2)  # two writers once shared the run
    with FakeServer(judge_by_steps) as server:
        recipe = tmp_path / "g.yaml"
        recipe.write_text(
            yaml.safe_dump(
                {
                    "run_dir": str(run),
                    "problems": {"path": str(problems)},
                    "models": {"judge": {"model": "j", "base_urls": [server.url], "max_retries": 0}},
                    "judges": [{"kind": "proof", "style": "simple", "label": "j"}],
                }
            )
        )
        assert cli.main(["grade", str(recipe)]) == 0
        assert server.requests == 1
    (grades,) = (run / "grades").glob("j-*.jsonl")
    assert len(grades.read_text().splitlines()) == 1
    assert "ignoring 1 duplicate record" in caplog.text
    caplog.clear()
    (cell,) = load_cells([run])
    assert len(cell.attempts) == 1 and "ignoring 1 duplicate record" in caplog.text


# -------------------------------------------------------------------------- item 5: exit codes


def test_an_eval_whose_every_item_failed_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeServer(lambda body: ErrorReply(500, "down")) as server:
        assert cli.main(["eval", str(eval_recipe(tmp_path, server.url))]) == 1
    err = capsys.readouterr().err
    assert "no attempts.jsonl found" not in err and "Run the same command again" in err


async def test_a_connection_error_names_the_base_url(tmp_path: Path) -> None:
    with FakeServer() as server:
        url = server.url  # a port nothing listens on once the server is gone
    store = RunDir(tmp_path / "run")
    llm = LLM(ModelConfig(model="m", base_urls=[url], max_retries=0), store.cache)
    outcome = await generate([Problem(id="p", statement="Prove it.")], Direct(), Models(llm), store)
    await llm.aclose()
    (reason,) = outcome.failed.values()
    assert "connection" in reason and url.rstrip("/") in reason


# ------------------------------------------------------------- item 6: the first failure wins


class FullDisk:
    """A sqlite connection on a full disk: reads work, every INSERT fails as SQLite reports it."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith("INSERT"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def close(self) -> None:
        self.db.close()


def test_on_a_full_disk_the_first_failure_is_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = RunDir(tmp_path / "run")
    with FakeServer() as server:
        llm = LLM(ModelConfig(model="m", base_urls=[server.url], max_retries=0), store.cache)
        store.cache._db = FullDisk(store.cache._db)  # type: ignore[assignment]

        def no_space(fd: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", no_space)  # every later append (call_stats.jsonl) fails too
        problems = [Problem(id="p", statement="Prove it.")]
        with pytest.raises(ConfigError) as failure:
            run_jobs(
                "generate", store, {"policy": llm}, {"g": lambda p: generate(problems, Direct(), Models(llm), store)}
            )
    assert "cannot write the call cache: database or disk is full" in str(failure.value)
    assert "call_stats" not in str(failure.value)


# --------------------------------------------------------------------- item 11: wrong overrides


def test_a_wrong_override_is_blamed_quoted_and_gets_the_nearest_key(capsys: pytest.CaptureFixture[str]) -> None:
    override = "benchmarks.imo-proofbench.problems.limt=5"
    with pytest.raises(ConfigError) as err:
        cfg.load("eval/table1-qed-nano", [override], EvalRecipe)
    message = str(err.value)
    assert (
        message == f"override {override!r}: benchmarks.imo-proofbench.problems.limt: unknown key; did you mean 'limit'?"
    )
    assert "table1-qed-nano.yaml" not in message  # not the recipe file's line
    with pytest.raises(ConfigError, match=r"^override 'samples=0': samples: Input should be greater"):
        cfg.load("eval/table1-qed-nano", ["samples=0"], EvalRecipe)
    with pytest.raises(ConfigError, match=r"override 'models.qed-nano.temprature=1': .*did you mean 'temperature'"):
        cfg.load("eval/table1-qed-nano", ["models.qed-nano.temprature=1"], EvalRecipe)


def test_an_unknown_key_in_the_file_names_its_line_and_the_nearest_key(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("run_dir: r\nproblems: {path: p.jsonl}\nmodels: {}\nsampels: 2\n")
    with pytest.raises(ConfigError, match=r"r.yaml:4: sampels: unknown key; did you mean 'samples'\?"):
        cfg.load(recipe, [], cli.RunRecipe)


# ------------------------------------------------------------------------ item 13: offline hub


@pytest.mark.parametrize(
    "offline", [{"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": "http://127.0.0.1:9"}], ids=["env", "no-net"]
)
def test_an_offline_run_on_a_hub_benchmark_fails_at_once_with_the_local_file_hint(
    tmp_path: Path, offline: dict[str, str]
) -> None:
    pytest.importorskip("datasets", reason="hub benchmarks are read with the optional `datasets` package")
    recipe = tmp_path / "hub.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(tmp_path / "run"),
                "problems": {"source": "imo-proofbench"},
                "models": {"policy": {"model": "m", "base_urls": ["http://127.0.0.1:9/v1"]}},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "proxy" not in k.lower()}
    env |= {"PYTHONPATH": str(SRC), "HF_HOME": str(tmp_path / "hf"), **offline}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "qednano", "generate", str(recipe)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "problems.path=" in done.stderr and "lm-provers/IMOProofBench" in done.stderr
    assert time.monotonic() - start < 20  # at once: no half a minute of hub retries


# ------------------------------------------------------------------------------- item 12: CLI


def test_every_subcommand_help_has_a_description_and_there_is_a_version(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subcommands.choices.items():
        assert sub.description and len(sub.description) > 20, name
        assert sub.description.split("\n")[0] in sub.format_help(), name
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"qednano {qednano.__version__}"


def test_in_a_pipe_errors_are_whole_lines_and_warnings_print_once(tmp_path: Path) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text(Problem(id="p0", statement="Prove it.").model_dump_json() + "\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / "attempts.jsonl").write_text('{"id": "torn')  # a crashed writer's torn last line: one warning
    recipe = tmp_path / "a-recipe-with-a-rather-long-name-so-that-its-error-line-is-wider-than-eighty-columns.yaml"
    model = {"model": "m", "base_urls": ["http://127.0.0.1:9/v1"], "max_retries": 0}
    recipe.write_text(
        yaml.safe_dump({"run_dir": str(run), "problems": {"path": str(problems)}, "models": {"policy": model}})
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "80"}

    def qednano_run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "qednano", *args], env=env, capture_output=True, text=True, timeout=120
        )
        return done.stderr

    err = qednano_run("generate", str(recipe), "samplez=2")
    (line,) = [x for x in err.splitlines() if "samplez" in x]
    assert line == "error: override 'samplez=2': samplez: unknown key; did you mean 'samples'?"
    err = qednano_run("generate", str(recipe))
    assert err.count("ignoring torn last line") == 1, err
    assert any(len(x) > 80 and "cannot reach http://127.0.0.1:9/v1" in x for x in err.splitlines()), err


# ------------------------------------------------------------------------------ item 14: demo


def test_the_demo_is_seeded_every_problem_has_a_rubric_and_the_docs_state_measured_times() -> None:
    demo = cfg.load("demo", [], EvalRecipe)
    assert all(m.seed is not None for m in demo.models.values())
    assert demo.benchmarks["demo"].models.judge.seed is not None
    problems = demo.benchmarks["demo"].problems.load()
    assert problems and all(p.rubric and p.solution for p in problems)
    repo = Path(__file__).resolve().parents[1]
    for doc in (repo / "README.md", repo / "Makefile", cfg.PACKAGE_RECIPES / "demo.yaml"):
        assert "about a minute" not in doc.read_text(), doc  # the old claim, half the measured time


async def test_the_seeded_tiny_model_gives_the_same_tokens_whatever_the_batching(tiny_model_dir: Path) -> None:
    def question(i: int) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"Prove that {i} + {i} is even."}]

    asks = [question(i % 3) for i in range(6)]  # identical requests too (an RSA population), which must differ

    async def run(together: bool) -> list[tuple[str, int]]:
        config = ModelConfig(
            engine="transformers", model=str(tiny_model_dir), device="cpu", max_tokens=12, temperature=1.0, seed=0
        )
        llm = LLM(config)  # a fresh model and engine: a fresh run
        if together:
            replies = await asyncio.gather(*(llm.complete(m) for m in asks))
        else:
            replies = [await llm.complete(m) for m in asks]
        await llm.aclose()
        assert isinstance(llm.engine, LocalEngine)
        assert max(llm.engine.batches) == (len(asks) if together else 1)  # seeded requests decode together
        return [(r.text, r.output_tokens) for r in replies]

    first, second = await run(True), await run(False)
    assert first == second
    assert first[0] != first[3]  # the same question asked twice is sampled twice


# ------------------------------------------------------------------------- item 17: dependencies


def test_dependency_floors_are_the_tested_versions_and_every_optional_skip_names_a_reason() -> None:
    import tomllib
    from importlib.metadata import version

    from conftest import LOCAL_EXTRA
    from packaging.requirements import Requirement
    from packaging.version import Version

    repo = Path(__file__).resolve().parents[1]
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    local = [Requirement(r) for r in project["optional-dependencies"]["local"]]
    assert sorted(r.name for r in local) == sorted(LOCAL_EXTRA)  # the tiny-model fixture skips without any of them
    floors = {r.name: r for r in local}
    assert Version("4.57") not in floors["transformers"].specifier  # passed token_type_ids to generate() and failed
    for spec in [*project["dependencies"], *project["optional-dependencies"]["local"]]:
        req = Requirement(spec)
        assert req.specifier.contains(version(req.name), prereleases=True), spec  # what is tested meets the floor
    for test in sorted((repo / "tests").glob("*.py")):
        for call in re.findall(r"pytest\.importorskip\(\s*([\"'].*?)\)\s*\n", test.read_text(), re.S):
            assert "reason=" in call, f"{test.name}: importorskip({call}) names no reason"


def test_imported_graders_alone_need_no_judge_and_the_readme_recipe_validates(tmp_path: Path) -> None:
    data = tmp_path / "graded.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in nested_rows()))
    recipe = nested_recipe(tmp_path, data, "http://127.0.0.1:9/v1")
    body = yaml.safe_load(recipe.read_text())
    recipe.write_text(yaml.safe_dump({**body, "models": {}, "judges": []}))
    assert cli.main(["grade", str(recipe)]) == 0  # nothing to call: only the self-rating against the humans
    assert "| self-rating | imported | 6 |" in (tmp_path / "run" / "agreement.md").read_text()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme[readme.index("Graded proofs from any project") :]
    example = block[block.index("```yaml") + 7 : block.index("```\n", block.index("```yaml") + 7)]
    loaded = cfg.load(write(tmp_path / "readme.yaml", example), [], cli.RunRecipe)
    assert loaded.attempts == "human" and loaded.problems.columns.graders == {
        "self-rating": "model_prediction.self_rating"
    }


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_run_lock_is_released_by_close(tmp_path: Path) -> None:
    first, second = RunDir(tmp_path / "run"), RunDir(tmp_path / "run")
    first.pin({"samples": 1})
    with pytest.raises(ConfigError, match="holds the run directory's lock"):
        second.pin({"samples": 1})
    first.close()
    second.pin({"samples": 1})  # the same recipe resumes once the first writer is gone
    assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())
    second.close()
