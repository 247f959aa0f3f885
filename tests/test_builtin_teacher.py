"""The built-in teacher: its mistakes cost what the rubric says, and it runs offline through `qednano generate` and `grade`.

The teacher's text goes through the real `LLM` class (the `builtin-teacher` engine), so the
call cache, token accounting and `max_tokens` truncation apply as to any model.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from qednano import config as cfg
from qednano.builtin.check import check
from qednano.builtin.source import BuiltinSource
from qednano.builtin.teacher import ERRORS, answer
from qednano.cli import main
from qednano.data.export import ExportRecipe
from qednano.eval.cells import EvalRecipe
from qednano.eval.runs import RunRecipe
from qednano.llm.client import LLM, Models, attempt_scope
from qednano.llm.types import LLMError, ModelConfig
from qednano.prompts import candidates_block, render, template
from qednano.records import Attempt, Grade
from qednano.scaffolds.rsa import RSA
from qednano.scaffolds.tournament import knockout

PROBLEMS = BuiltinSource(count=40, difficulty=(1, 8)).load()
EXPECTED = {
    "skip_justification": "unjustified_conclusion",
    "wrong_citation": "wrong_citation",
    "distractor_step": "distractor_step",
    "invalid_step": "invalid_step",
}
DEDUCTED = {"invalid_step": 2}


@pytest.mark.parametrize("kind", ERRORS)
def test_each_teacher_mistake_gets_the_rubrics_deduction(kind: str) -> None:
    for i, p in enumerate(PROBLEMS):
        text, made = answer(p.statement, random.Random(i), error_rate=1.0, errors=(kind,))
        assert made == kind
        result = check(p.statement, p.rubric, text)
        if kind == "truncate":
            assert result.points is not None and result.points < 7 and "truncated" in result.flags
        else:
            assert (result.points, result.flags) == (7.0 - DEDUCTED.get(kind, 1), [EXPECTED[kind]]), (p.id, text)


def test_a_clean_teacher_writes_the_shortest_proof_and_thinks_when_asked() -> None:
    for p in PROBLEMS[:10]:
        text, made = answer(render(template("builtin_proof"), problem=p.statement), random.Random(0))
        assert made is None and text.count("\n") == p.solution.count("\n")
        assert check(p.statement, p.rubric, text).points == 7.0
        thought, _ = answer(p.statement, random.Random(0), think=True)
        reasoning, _, proof = thought.partition("</think>")
        assert reasoning.startswith("<think>\nneed ") and proof.strip() == text


def teacher(**extra: Any) -> ModelConfig:
    return ModelConfig(engine="builtin-teacher", model="builtin-teacher", **extra)


def test_the_teacher_passes_through_the_llm_class_with_truncation_and_accounting() -> None:
    p = PROBLEMS[-1]  # difficulty 8: about 22 steps, over 100 tokens
    llm = LLM(teacher(max_tokens=40))
    done = asyncio.run(llm.complete([{"role": "user", "content": p.statement}]))
    assert done.truncated and done.finish_reason == "length" and done.output_tokens == 40
    assert llm.stats.sent == 1 and done.input_tokens == len(p.statement.split()) + 1  # words and the newline
    result = check(p.statement, p.rubric, done.text, truncated=True)
    assert "truncated" in result.flags and result.points is not None and result.points < 7
    think = LLM(teacher(reasoning_delimiter="</think>", extra_body={"think": True}))
    split = asyncio.run(think.complete([{"role": "user", "content": p.statement}]))
    assert split.reasoning.startswith("need ") and check(p.statement, p.rubric, split.text).points == 7.0


def test_the_teacher_summarises_what_a_candidate_established() -> None:
    p = PROBLEMS[3]
    candidate = "\n".join(p.solution.splitlines()[:2])
    prompt = render(template("builtin_rc_summarize"), problem=p.statement, summary="none", candidate=candidate)
    text, _ = answer(prompt, random.Random(0))
    assert text == "known : " + candidate
    # a trace's got lines count, a wrong citation is rightly cited, and the next turn's proof opens with them
    first, second = p.solution.splitlines()[:2]
    wrong = second.replace(second.split()[2], "r999")
    traced = render(
        template("builtin_rc_summarize"), problem=p.statement, summary="none", candidate=f"got {first}\n{wrong}"
    )
    assert answer(traced, random.Random(0))[0] == "known : " + candidate
    solve = render(template("builtin_rc_solve"), problem=p.statement, summary="known : " + candidate)
    proof, _ = answer(solve, random.Random(0), think=True)
    reasoning, _, written = proof.partition("</think>\n")
    assert written.startswith(candidate + "\n") and check(p.statement, p.rubric, written).points == 7.0
    assert f"need {first.split()[0]}" not in reasoning.splitlines()  # the summary's facts are not searched again


def test_the_teacher_aggregates_the_candidates_steps_that_hold_and_goes_on_from_them() -> None:
    p = PROBLEMS[30]  # difficulty 7: a proof of many steps
    steps = p.solution.splitlines()[:-1]  # without `qed`
    wrong = steps[1].replace(steps[1].split()[2], "r999")
    first = "\n".join([steps[0], wrong])  # a wrong citation: the step holds, rightly cited in the aggregate
    second = "\n".join([*steps[2:4], "p259 by r1 from p0 p1"])  # steps that hold after the first's, then a bad one
    block = candidates_block([first, second, ""], "(empty)")
    prompt = render(template("builtin_rsa_aggregate"), problem=p.statement, candidates=block)
    text, made = answer(prompt, random.Random(0), think=True)
    reasoning, _, proof = text.partition("</think>\n")
    assert made is None and proof.startswith("\n".join(steps[:4]) + "\n")
    assert check(p.statement, p.rubric, proof).points == 7.0
    assert f"need {steps[0].split()[0]}" not in reasoning.splitlines()  # the candidates' facts are not searched again
    nothing = render(template("builtin_rsa_aggregate"), problem=p.statement, candidates=candidates_block(["qed"], ""))
    assert answer(nothing, random.Random(0))[0] == answer(p.statement, random.Random(0))[0]


def test_rsa_poses_its_aggregations_through_the_aggregate_prompt() -> None:
    p = PROBLEMS[5]
    rsa = RSA(
        population=2, k=2, rounds=1, prompt="builtin_proof", aggregate_prompt="builtin_rsa_aggregate", select="random"
    )
    with attempt_scope("p/0") as scope:
        proof = asyncio.run(rsa.run(p, Models(LLM(teacher()))))
    asked = [c.messages[-1]["content"] for c in scope.completions if c.step.startswith("aggregate/")]
    assert len(asked) == 2 and all(a.startswith(template("builtin_rsa_aggregate").split("\n")[0]) for a in asked)
    assert check(p.statement, p.rubric, proof).points == 7.0


def test_the_teacher_referees_a_match_by_each_proofs_checked_score() -> None:
    p = PROBLEMS[10]
    flawed, made = answer(p.statement, random.Random(0), error_rate=1.0, errors=("wrong_citation",))
    assert made == "wrong_citation" and check(p.statement, p.rubric, flawed).points == 6.0
    for prompt in ("builtin_tournament", "tournament"):  # the built-in template and the generic one
        with attempt_scope("p/0") as scope:
            bracket = asyncio.run(knockout(p, [flawed, p.solution], LLM(teacher()), random.Random(1), prompt=prompt))
        assert bracket.winner == 1 and bracket.matches[0].verdict in ("1", "2")
        trace = scope.completions[0].text.splitlines()
        assert (
            trace.count("score 7") == 1
            and trace.count("score 6") == 1
            and sum(line.endswith(" wrong") for line in trace) == 1
            and trace.count("qed") == 2
        )
        marks = [line for line in trace if not line.startswith(("proof", "score", "<verdict>", "qed"))]
        assert marks and all(" by " in line for line in marks)  # each step line is copied before its verdict
        assert scope.completions[0].messages[-1]["content"].startswith(template(prompt).split("\n")[0])
    tie = asyncio.run(knockout(p, [p.solution, p.solution], LLM(teacher()), random.Random(1)))
    assert tie.matches[0].verdict == "tie"
    thought = LLM(teacher(reasoning_delimiter="</think>", extra_body={"think": True}))
    with attempt_scope("p/1") as scope:
        asyncio.run(knockout(p, [p.solution, flawed], thought, random.Random(1), prompt="builtin_tournament"))
    call = scope.completions[0]
    assert call.reasoning.startswith("proof 1\n") and call.text.strip() in (
        "<verdict>1</verdict>",
        "<verdict>2</verdict>",
    )


def test_rsa_with_the_teachers_knockout_returns_its_best_last_member() -> None:
    rsa = RSA(
        population=4,
        k=2,
        rounds=1,
        prompt="builtin_proof",
        aggregate_prompt="builtin_rsa_aggregate",
        tournament_prompt="builtin_tournament",
    )
    flawed = LLM(teacher(extra_body={"error_rate": 0.7}))
    beaten = 0
    for p in PROBLEMS[:12]:
        with attempt_scope(f"{p.id}/0") as scope:
            proof = asyncio.run(rsa.run(p, Models(flawed)))
        last = [
            check(p.statement, p.rubric, c.text).points for c in scope.completions if c.step.startswith("aggregate/")
        ]
        matches = [c for c in scope.completions if c.step.startswith("tournament/")]
        assert len(matches) == 3 and all(
            m.messages[-1]["content"].startswith("Choose the better proof") for m in matches
        )
        assert check(p.statement, p.rubric, proof).points == max(last)
        beaten += min(last) < max(last)
    assert beaten >= 3  # the pick mattered on several problems


def test_bad_teacher_settings_fail_the_call_with_the_reason() -> None:
    with pytest.raises(LLMError, match="unknown errors"):
        asyncio.run(LLM(teacher(extra_body={"errors": ["typo"]})).complete([{"role": "user", "content": "x"}]))
    with pytest.raises(LLMError, match="error_rate"):
        asyncio.run(LLM(teacher(extra_body={"error_rate": 2})).complete([{"role": "user", "content": "x"}]))


def write_recipe(tmp_path: Path, error_rate: float, count: int = 60) -> Path:
    model = {
        "engine": "builtin-teacher",
        "model": "builtin-teacher",
        "seed": 1,
        "extra_body": {"error_rate": error_rate},
    }
    recipe = {
        "run_dir": str(tmp_path / f"run-{error_rate}"),
        "problems": {"source": "builtin", "split": "train", "count": count, "difficulty": [1, 8]},
        "models": {"policy": model, "judge": model},
        "scaffold": {"name": "direct", "prompt": "builtin_proof"},
        "samples": 2,
        "judges": [{"kind": "builtin"}],
    }
    path = tmp_path / f"teacher-{error_rate}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def grades(run_dir: Path) -> list[Grade]:
    (file,) = (run_dir / "grades").glob("*.jsonl")
    return [Grade.model_validate_json(line) for line in file.read_text().splitlines()]


def test_teacher_data_through_generate_and_grade_offline_and_the_error_rate_shows(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 0.4)
    assert main(["generate", str(recipe)]) == 0
    assert main(["grade", str(recipe)]) == 0
    run = tmp_path / "run-0.4"
    attempts = [Attempt.model_validate_json(line) for line in (run / "attempts.jsonl").read_text().splitlines()]
    assert len(attempts) == 120 and all(a.transcript[0].model == "builtin-teacher" for a in attempts)
    assert len({a.proof for a in attempts if a.sample == 0} ^ {a.proof for a in attempts if a.sample == 1}) > 0
    graded = grades(run)
    assert len(graded) == 120 and all(g.points is not None for g in graded)
    imperfect = [g for g in graded if g.points < 7]
    assert 0.3 <= len(imperfect) / len(graded) <= 0.5  # one mistake in 40% of proofs
    assert all(g.flags for g in imperfect) and not any(g.flags for g in graded if g.points == 7)
    kinds = Counter(f for g in imperfect for f in g.flags)
    assert {"unjustified_conclusion", "wrong_citation", "distractor_step", "truncated"} <= set(kinds)
    # Resume: nothing is generated or graded twice.
    assert main(["generate", str(recipe)]) == 0 and main(["grade", str(recipe)]) == 0
    assert len((run / "attempts.jsonl").read_text().splitlines()) == 120 and len(grades(run)) == 120
    stats = [json.loads(line) for line in (run / "call_stats.jsonl").read_text().splitlines()]
    assert sum(s["sent"] for s in stats) == 120


def test_a_teacher_without_errors_scores_full_marks(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, 0.0, count=20)
    assert main(["generate", str(recipe)]) == 0 and main(["grade", str(recipe)]) == 0
    assert {g.points for g in grades(tmp_path / "run-0.0")} == {7.0}


def test_the_shipped_builtin_recipes_load() -> None:
    run = cfg.load("builtin/teacher", [], RunRecipe)
    assert run.problems.source == "builtin" and run.judges[0].kind == "builtin"
    assert run.models.policy is not None and run.models.policy.engine == "builtin-teacher"
    evaluation = cfg.load("builtin/teacher-eval", [], EvalRecipe)
    assert set(evaluation.scaffolds) == {"direct", "reasoning_cache", "rsa"}
    bench = evaluation.benchmarks["builtin"]
    assert bench.judge.kind == "builtin" and bench.problems.source == "builtin"
    assert {p.metadata["subset"] for p in bench.problems.load()} == {"heldout"}
    export = cfg.load("builtin/export", [], ExportRecipe)
    assert isinstance(export.problems, list) and {s.source for s in export.problems} == {"builtin"}
    export_rc = cfg.load("builtin/export-rc", [], ExportRecipe)
    assert not isinstance(export_rc.problems, list) and export_rc.problems is not None
    assert tuple(export_rc.problems.difficulty) == (4, 4) and export_rc.rl is not None and export_rc.sft is None


def test_the_builtin_eval_runs_offline_with_three_scaffolds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["eval", "builtin/teacher-eval", "samples=1", "benchmarks.builtin.problems.count=6"]
    assert main(args) == 0
    report = json.loads((tmp_path / "runs" / "builtin-teacher-eval" / "report.json").read_text())
    scores = {s["scaffold"]: s for s in report["summaries"]}
    assert set(scores) == {"direct", "reasoning_cache", "rsa"}
    cell = tmp_path / "runs" / "builtin-teacher-eval" / "builtin" / "teacher" / "reasoning_cache"
    assert len(grades(cell)) == 6 and all(g.points is not None for g in grades(cell))


def test_reasoning_cache_lets_a_thinking_teacher_finish_what_one_turn_cannot(tmp_path: Path) -> None:
    """Under 512 tokens a call, a difficulty-8 trace plus proof does not fit one turn; the summary's facts shorten the next trace."""
    model = {
        "engine": "builtin-teacher",
        "model": "builtin-teacher",
        "max_tokens": 512,
        "reasoning_delimiter": "</think>",
        "extra_body": {"think": True},
    }
    points = {}
    for scaffold in (
        {"name": "direct", "prompt": "builtin_proof"},
        {
            "name": "reasoning_cache",
            "turns": 4,
            "solve_template": "builtin_rc_solve",
            "summary_template": "builtin_rc_summarize",
        },
    ):
        recipe = {
            "run_dir": str(tmp_path / scaffold["name"]),
            "problems": {"source": "builtin", "split": "heldout", "count": 4, "difficulty": [8, 8]},
            "models": {"policy": model, "judge": model},
            "scaffold": scaffold,
            "judges": [{"kind": "builtin"}],
        }
        path = tmp_path / f"{scaffold['name']}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        assert main(["generate", str(path)]) == 0 and main(["grade", str(path)]) == 0
        points[scaffold["name"]] = [g.points for g in grades(tmp_path / scaffold["name"])]
    assert all(p < 7 for p in points["direct"])  # cut off: at most the milestones its partial proof reached
    assert points["reasoning_cache"] == [7.0] * 4


def test_rsa_with_reasoning_lets_candidates_cut_off_mid_thought_pass_on_their_steps() -> None:
    """Under 384 tokens a call, difficulty-6 candidates run out mid-trace: only their reasoning holds what they found."""
    thinking = LLM(teacher(max_tokens=384, reasoning_delimiter="</think>", extra_body={"think": True}))
    hard = [p for p in PROBLEMS if p.metadata["level"] == 6][:5]
    assert hard
    points: dict[bool, list[float | None]] = {}
    for with_reasoning in (False, True):
        rsa = RSA(
            population=2,
            k=2,
            rounds=1,
            prompt="builtin_proof",
            aggregate_prompt="builtin_rsa_aggregate",
            with_reasoning=with_reasoning,
            select="random",
        )
        points[with_reasoning] = []
        for p in hard:
            with attempt_scope(f"{p.id}/{with_reasoning}") as scope:
                proof = asyncio.run(rsa.run(p, Models(thinking)))
            asked = [c.messages[-1]["content"] for c in scope.completions if c.step.startswith("aggregate/")]
            assert all(("\n<think>\n" in a) == with_reasoning for a in asked)
            points[with_reasoning].append(check(p.statement, p.rubric, proof).points)
    assert points[False].count(7.0) <= 1  # most candidates showed nothing: each aggregation's search starts over
    assert points[True].count(7.0) >= 3 and all(
        (a or 0) >= (b or 0) for a, b in zip(points[True], points[False], strict=True)
    )
