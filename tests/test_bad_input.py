"""Bad input and broken output folders: a clear error naming file, line and field, exit code 2,
and no existing output overwritten or truncated.

Every case starts from a real run directory (the CLI against the fake server, two of four
problems done), breaks one thing, runs the real CLI, and compares every file of the run with
its checksum from before (the call cache by its rows: SQLite may checkpoint its log). A full
disk is simulated with RLIMIT_FSIZE in a subprocess (writes past the limit fail with EFBIG,
which root cannot bypass); a read-only folder with /sys, which is read-only even for root.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from qednano import cli
from qednano.records import Attempt, Problem
from qednano.testing.fake_server import ErrorReply, FakeServer, ScriptedReply

PROBLEMS = [Problem(id=f"p{i}", statement=f"Prove claim {i}.") for i in range(4)]


@dataclass
class Run:
    """A recipe and its run directory with p0 and p1 done (p2 and p3 failed), and its live server."""

    root: Path
    recipe: Path
    dir: Path
    server: FakeServer
    failing: dict[str, bool]


def snapshot(folder: Path) -> dict[str, Any]:
    """Each file's bytes, the call cache as its rows; SQLite's -wal and -shm files are left out."""
    out: dict[str, Any] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if name.endswith(("-wal", "-shm")):
            continue
        if name.endswith(".sqlite"):
            db = sqlite3.connect(path)
            try:
                out[name] = sorted(db.execute("SELECT key, completion FROM calls"))
            finally:
                db.close()
        else:
            out[name] = path.read_bytes()
    return out


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    failing = {"on": True}

    def script(body: dict[str, Any]) -> ScriptedReply | ErrorReply:
        text = body["messages"][0]["content"]
        if failing["on"] and ("claim 2" in text or "claim 3" in text):
            return ErrorReply(500, "down")
        return ScriptedReply(content=f"A proof of {text[-9:]}")

    root = tmp_path / "recipes"
    root.mkdir()
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(p.model_dump_json() + "\n" for p in PROBLEMS))
    with FakeServer(script) as server:
        recipe = root / "run.yaml"
        model = {"model": "m", "base_urls": [server.url], "max_retries": 0, "concurrency": 2}
        body = {"run_dir": str(tmp_path / "run"), "problems": {"path": str(data)}, "models": {"policy": model}}
        recipe.write_text(yaml.safe_dump(body, sort_keys=False))
        assert cli.main(["generate", str(recipe)]) == 1  # p2 and p3 failed: work left for later
        yield Run(tmp_path, recipe, tmp_path / "run", server, failing)


def bad(run: Run, argv: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> None:
    """Run the CLI; it must exit 2 with every `expected` text in its error and change no file of the run."""
    before = snapshot(run.dir)
    requests = run.server.requests
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for text in expected:
        assert squeeze(text) in squeeze(err), (text, err)
    assert snapshot(run.dir) == before
    assert run.server.requests == requests  # bad input is found before any call


def squeeze(text: str) -> str:
    """`text` without whitespace: rich wraps long lines, anywhere."""
    return "".join(text.split())


def edit_recipe(run: Run, name: str, text: str) -> Path:
    path = run.recipe.with_name(name)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------- data files


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        # a record cut off mid-line (a truncated copy): an input file has no torn tail to forgive
        (['{"id": "p0", "statement": "A"}', '{"id": "p1", "statem'], ["problems.jsonl:2:", "Invalid JSON"]),
        (['{"id": "p0", "statement": "A"}', "{id: p1}", '{"id": "p2", "statement": "C"}'], ["problems.jsonl:2:"]),
        (['{"id": "p0", "statement": "A", "max_points": "seven"}'], ["problems.jsonl:1: max_points"]),
        (['{"id": "p0", "statement": ["A"]}'], ["problems.jsonl:1: statement"]),
        (['{"id": "p0", "statement": "A", "colour": "blue"}'], ["problems.jsonl:1: colour"]),
        (['["p0", "A"]'], ["problems.jsonl:1:"]),
    ],
)
def test_malformed_problem_file(
    run: Run, capsys: pytest.CaptureFixture[str], lines: list[str], expected: list[str]
) -> None:
    (run.root / "problems.jsonl").write_text("\n".join(lines))
    bad(run, ["generate", str(run.recipe)], capsys, *expected)


def test_corrupt_line_inside_the_runs_own_records_is_named_and_left_alone(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    attempts = run.dir / "attempts.jsonl"
    first, *rest = attempts.read_text().splitlines(keepends=True)
    attempts.write_text(first.replace('"proof":', '"proof":!', 1) + "".join(rest))
    bad(run, ["generate", str(run.recipe)], capsys, "attempts.jsonl:1:")


def test_csv_with_shifted_columns_names_the_line_and_field(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = run.root / "answers.csv"
    csv_path.write_text(
        "Problem ID,Problem,Short Answer,Category,Subcategory,Source\n"
        'imo-bench-algebra-001,"Find $x$.",3,Algebra,Equations,Olympiad A\n'
        # the answer is missing, so every later field moved one column left
        'imo-bench-algebra-002,"Find $y$.",Algebra,Equations,Olympiad B\n'
    )
    body = yaml.safe_load(run.recipe.read_text())
    body["problems"] = {"source": "imo-answerbench", "path": str(csv_path)}
    recipe = edit_recipe(run, "csv.yaml", yaml.safe_dump(body))
    bad(run, ["generate", str(recipe)], capsys, "answers.csv:3: Category", "'Equations'")


def test_table_with_a_short_row_and_markup_in_a_value(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = run.root / "table.csv"
    csv_path.write_text("id,question,points\na,Prove A.,7\nb\nc,Prove C.,[/bold]\n")
    body = yaml.safe_load(run.recipe.read_text())
    columns = {"id": "id", "statement": "question", "max_points": "points"}
    body["problems"] = {"source": "table", "path": str(csv_path), "columns": columns}
    recipe = edit_recipe(run, "table.yaml", yaml.safe_dump(body))
    # the value is printed as text, not read as rich markup (which would crash the CLI)
    bad(
        run,
        ["generate", str(recipe)],
        capsys,
        "table.csv:3: question: empty statement",
        "table.csv:4: points",
        "[/bold]",
    )


# ------------------------------------------------------------------------- recipes


def test_recipe_with_wrong_types_names_file_line_and_key(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    text = run.recipe.read_text() + "samples: [1, 2]\nmax_inflight: many\n"
    line = text.splitlines().index("samples: [1, 2]") + 1
    recipe = edit_recipe(run, "types.yaml", text)
    bad(run, ["generate", str(recipe)], capsys, f"types.yaml:{line}: samples", f"types.yaml:{line + 1}: max_inflight")


def test_invalid_yaml_and_a_list_at_the_top(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    broken = edit_recipe(run, "broken.yaml", run.recipe.read_text() + "samples: [1, 2\n")
    bad(run, ["generate", str(broken)], capsys, "broken.yaml", "invalid YAML", "line")
    listed = edit_recipe(run, "list.yaml", "- run_dir: x\n")
    bad(run, ["generate", str(listed)], capsys, "list.yaml:1: expected a mapping")


def test_wrong_type_in_a_named_model_names_the_model_file(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    (run.recipe.parent / "models").mkdir()
    (run.recipe.parent / "models" / "shaky.yaml").write_text("model: m\nconcurrency: lots\n")
    body = yaml.safe_load(run.recipe.read_text()) | {"models": {"policy": "shaky"}}
    recipe = edit_recipe(run, "named.yaml", yaml.safe_dump(body))
    bad(run, ["generate", str(recipe)], capsys, "shaky.yaml:2: models.policy.concurrency")


def test_override_with_a_wrong_type(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    bad(run, ["generate", str(run.recipe), "models.policy.max_retries=-1"], capsys, "models.policy.max_retries")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: ["generate", str(r.root / "absent.yaml")], "absent.yaml: file not found"),
        (
            lambda r: ["generate", str(r.recipe), f"problems.path={r.root / 'gone.jsonl'}"],
            "gone.jsonl: problem file not found",
        ),
        (lambda r: ["generate", str(r.recipe), "models.policy=nope"], "nope.yaml not found"),
        (
            lambda r: [
                "generate",
                str(r.recipe),
                f"run_dir={r.root / 'new'}",
                "scaffold={name: direct, prompt: lost.md}",
            ],
            "lost.md not found",
        ),
        (lambda r: ["report", str(r.root / "no-run")], "no-run: not a run directory"),
    ],
)
def test_missing_files(
    run: Run, capsys: pytest.CaptureFixture[str], change: Callable[[Run], list[str]], expected: str
) -> None:
    bad(run, change(run), capsys, expected)


def test_changed_problems_on_resume_are_refused_not_overwritten(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    problems = run.root / "bench.jsonl"
    problems.write_text("".join(p.model_dump_json() + "\n" for p in PROBLEMS[:2]))
    body = {
        "run_dir": str(run.root / "eval"),
        "benchmarks": {
            "b": {
                "problems": {"path": str(problems)},
                "judge": {"kind": "proof", "style": "simple", "max_reasks": 0},
                "models": {"judge": {"model": "j", "base_urls": [run.server.url], "max_retries": 0}},
            }
        },
        "models": {"m": {"model": "m", "base_urls": [run.server.url], "max_retries": 0}},
    }
    recipe = edit_recipe(run, "eval.yaml", yaml.safe_dump(body))
    assert cli.main(["eval", str(recipe)]) == 0
    capsys.readouterr()
    edited = PROBLEMS[0].model_copy(update={"statement": "Prove another claim 0."})
    problems.write_text("".join(p.model_dump_json() + "\n" for p in [edited, PROBLEMS[1]]))
    before = snapshot(run.root / "eval")
    assert cli.main(["eval", str(recipe)]) == 2
    assert squeeze("problems changed since this run started (first: p0)") in squeeze(capsys.readouterr().err)
    assert snapshot(run.root / "eval") == before


def test_eval_labels_cannot_leave_the_run_directory(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    body = {
        "run_dir": str(run.root / "eval" / "inner"),
        "benchmarks": {
            "..": {
                "problems": {"path": str(run.root / "problems.jsonl")},
                "judge": {"kind": "answer"},
                "models": {"judge": {"model": "j"}},
            }
        },
        "models": {"m": {"model": "m"}},
    }
    recipe = edit_recipe(run, "dots.yaml", yaml.safe_dump(body))
    bad(run, ["eval", str(recipe)], capsys, "benchmark label '..'")
    assert not (run.root / "eval").exists()


# ------------------------------------------------------------------------- output folders


def test_run_dir_that_is_a_file_or_on_a_read_only_filesystem(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    (run.root / "taken").write_text("not a folder")
    bad(
        run,
        ["generate", str(run.recipe), f"run_dir={run.root / 'taken' / 'run'}"],
        capsys,
        "taken/run: cannot create run directory",
    )
    assert (run.root / "taken").read_text() == "not a folder"
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no /sys here: no read-only filesystem to write to")
    bad(run, ["generate", str(run.recipe), "run_dir=/sys/qednano-run"], capsys, "/sys/qednano-run")


def test_unreadable_records_and_a_corrupt_call_cache(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    other = run.root / "other"
    (other / "attempts.jsonl").mkdir(parents=True)  # a folder where the records should be
    bad(run, ["generate", str(run.recipe), f"run_dir={other}"], capsys, "attempts.jsonl: cannot read")

    cache = run.dir / "calls.sqlite"
    for extra in ("-wal", "-shm"):
        Path(f"{cache}{extra}").unlink(missing_ok=True)
    cache.write_bytes(b"this is not a database" * 100)
    before = cache.read_bytes()
    code = cli.main(["generate", str(run.recipe)])
    err = squeeze(capsys.readouterr().err)
    assert code == 2 and squeeze("calls.sqlite: cannot open the call cache") in err, err
    assert cache.read_bytes() == before


def test_unwritable_run_directory(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through permission bits; the read-only and full-disk tests cover root")
    run.dir.chmod(0o500)
    try:
        run.failing["on"] = False
        before = snapshot(run.dir)
        assert cli.main(["generate", str(run.recipe)]) == 2
        assert snapshot(run.dir) == before
    finally:
        run.dir.chmod(0o700)


def full_disk(limit: int) -> Callable[[], None]:
    """A preexec_fn: files cannot grow past `limit` bytes (EFBIG instead of SIGXFSZ)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


def qednano(limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qednano", *args],
        preexec_fn=full_disk(limit),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_full_disk_while_generating_keeps_every_record(run: Run) -> None:
    run.failing["on"] = False  # p2 and p3 can be done now, but their results cannot be stored
    before = snapshot(run.dir)
    attempts = (run.dir / "attempts.jsonl").read_bytes()
    done = qednano(len(attempts) + 64, "generate", str(run.recipe))
    err = squeeze(done.stderr)
    assert done.returncode == 2, err
    assert "Traceback" not in err and ("calls.sqlite:cannot" in err or "attempts.jsonl:cannot" in err), err
    after = snapshot(run.dir)
    assert (run.dir / "attempts.jsonl").read_bytes() == attempts  # not truncated, no torn line
    for name, old in before.items():  # every file kept whole: the records at most appended to
        if not name.endswith(".sqlite") and name != ".lock":  # .lock holds the pid of the run that holds it
            assert after[name][: len(old)] == old if name.endswith(".jsonl") else after[name] == old, name
    assert set(before["calls.sqlite"]) <= set(after["calls.sqlite"])  # finished calls kept

    # with room again, the same command finishes the run
    assert cli.main(["generate", str(run.recipe)]) == 0
    records = [Attempt.model_validate_json(line) for line in (run.dir / "attempts.jsonl").read_text().splitlines()]
    assert sorted(a.id for a in records) == ["p0/0", "p1/0", "p2/0", "p3/0"]


def test_full_disk_mid_append_cuts_the_partial_line_back(tmp_path: Path) -> None:
    store = tmp_path / "run"
    store.mkdir()
    path = store / "attempts.jsonl"
    path.write_text(
        Attempt(id="p/0", problem_id="p", sample=0, scaffold="direct", proof="short").model_dump_json() + "\n"
    )
    size = path.stat().st_size
    snippet = (
        "import sys\n"
        "from qednano.store import RunDir\nfrom qednano.records import Attempt\nfrom qednano.config import ConfigError\n"
        "a = Attempt(id='p/1', problem_id='p', sample=1, scaffold='direct', proof='x' * 5000)\n"
        "try:\n    RunDir(sys.argv[1]).append('attempts.jsonl', a)\n"
        "except ConfigError as err:\n    print(err)\n    sys.exit(2)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", snippet, str(store)],
        preexec_fn=full_disk(size + 100),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "attempts.jsonl: cannot append a record: File too large" in done.stdout
    assert path.stat().st_size == size  # the 100 bytes that did fit were cut back off
    assert not list(store.glob("*.torn"))


def test_full_disk_while_writing_the_report_keeps_the_old_report(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(run.dir)]) == 0
    capsys.readouterr()
    before = snapshot(run.dir)
    done = qednano(4096, "report", str(run.dir))
    err = squeeze(done.stderr)
    assert done.returncode == 2, err
    assert "report" in err and squeeze("cannot write: File too large") in err, err
    assert snapshot(run.dir) == before  # every old report file as it was, no temporary file left
    assert json.loads((run.dir / "report.json").read_text())["summaries"]


def test_dataset_row_with_a_wrong_type_names_the_row_and_field(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    rows = run.root / "comp_2025.jsonl"
    good = {"problem_idx": 1, "problem": "Prove A.", "points": 7}
    rows.write_text(json.dumps(good) + "\n" + json.dumps(good | {"problem_idx": 2, "points": "seven"}) + "\n")
    body = yaml.safe_load(run.recipe.read_text()) | {"problems": {"source": "matharena", "path": str(rows)}}
    recipe = edit_recipe(run, "matharena.yaml", yaml.safe_dump(body))
    bad(run, ["generate", str(recipe)], capsys, "comp_2025.jsonl:2: points: expected a positive integer, got 'seven'")
