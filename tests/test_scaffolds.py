"""Reasoning Cache, Self-Check and Nomos against scripted models: call sequences, stop rules, fallbacks."""

from __future__ import annotations

import itertools
import re

import pytest
from scaffold_script import run_scaffold, scripted_llm, steps

from qednano.llm.client import Models
from qednano.llm.types import Reply
from qednano.scaffolds.nomos import Nomos, parse_keep, parse_score
from qednano.scaffolds.reasoning_cache import NO_SUMMARY, ReasoningCache
from qednano.scaffolds.self_check import SelfCheck, verdict_is_pass

# ---------------------------------------------------------------------------- reasoning cache


def rc_respond(empty_summary_at: int | None = None, empty_final_at: int | None = None):
    solves, summaries = itertools.count(1), itertools.count(1)

    def respond(kind: str, messages: list[dict]) -> Reply | str:
        if kind == "rc_solve":
            t = next(solves)
            final = "" if t == empty_final_at else f"final-{t}"
            return Reply(final, f"thoughts-{t}", 100, 40, "stop")
        assert kind == "rc_summarize"
        t = next(summaries)
        return "" if t == empty_summary_at else f"summary-{t}"

    return respond


async def test_rc_turns_roles_and_conditioning() -> None:
    policy, pe = scripted_llm(rc_respond(), name="policy")
    summarizer, se = scripted_llm(rc_respond(), name="summarizer")
    # The summarizer engine only sees summaries; its solve counter stays unused.
    summarizer.engine.respond = lambda k, m: f"summary-{len(se.requests)}"
    proof, transcript = await run_scaffold(ReasoningCache(summary_tokens=2048), Models(policy, summarizer))
    assert steps(transcript) == ["solve/1", "summarize/1", "solve/2", "summarize/2", "solve/3"]
    assert pe.kinds == ["rc_solve"] * 3 and se.kinds == ["rc_summarize"] * 2
    assert proof == "final-3"
    solve = [r["messages"][0]["content"] for r in pe.requests]
    assert NO_SUMMARY in solve[0] and "summary-1" in solve[1] and "summary-2" in solve[2]
    summarize = [r["messages"][0]["content"] for r in se.requests]
    assert "thoughts-1" in summarize[0] and "final-1" not in summarize[0]
    assert "summary-1" in summarize[1] and "thoughts-2" in summarize[1]
    assert all(r["max_tokens"] == 2048 for r in se.requests)
    assert all("max_tokens" not in r for r in pe.requests)


async def test_rc_summarises_final_text_when_asked() -> None:
    llm, engine = scripted_llm(rc_respond())
    await run_scaffold(ReasoningCache(turns=2, summarize="text"), Models(llm))
    summary_request = engine.requests[engine.kinds.index("rc_summarize")]["messages"][0]["content"]
    assert "final-1" in summary_request and "thoughts-1" not in summary_request


async def test_rc_fallbacks_keep_previous_summary_and_proof() -> None:
    llm, engine = scripted_llm(rc_respond(empty_summary_at=2, empty_final_at=3))
    proof, transcript = await run_scaffold(ReasoningCache(turns=3), Models(llm))
    assert proof == ""  # the last turn is the answer, even with no final text (issue 10, item 3)
    third_solve = [r for r in engine.requests if engine.kinds[engine.requests.index(r)] == "rc_solve"][2]
    assert "summary-1" in third_solve["messages"][0]["content"]  # empty summary 2 kept summary 1
    assert len(transcript) == 5


async def test_rc_single_turn_is_one_call() -> None:
    llm, engine = scripted_llm(rc_respond())
    proof, transcript = await run_scaffold(ReasoningCache(turns=1), Models(llm))
    assert len(engine.requests) == 1
    assert (proof, steps(transcript)) == ("final-1", ["solve/1"])


# ---------------------------------------------------------------------------- self-check


@pytest.mark.parametrize(
    ("text", "passed"),
    [
        ("Yes", True),
        ("yes.", True),
        ("No", False),
        ("Eyes on the gap: no", False),
        ("No... actually yes", True),
        ("", False),
        ("Correct.", False),
    ],
)
def test_classifier_parsing(text: str, passed: bool) -> None:
    assert verdict_is_pass(text) is passed


def self_check_respond(verdicts: list[str]):
    answers = iter(verdicts)
    corrections = itertools.count(1)

    def respond(kind: str, messages: list[dict]) -> str:
        if kind == "sc_solve":
            return "**1. Summary** sketch\n**2. Detailed Solution**\ndraft"
        if kind == "sc_improve":
            return "**1. Summary** sketch\n**2. Detailed Solution**\nimproved"
        if kind == "sc_verify":
            return "**Summary** Final Verdict: step 3 is wrong.\n\n**Detailed Verification Log**\nlong log"
        if kind == "sc_classify":
            return next(answers)
        assert kind == "sc_correct"
        return f"**2. Detailed Solution**\ncorrected-{next(corrections)}"

    return respond


async def test_self_check_accepts_after_k_consecutive_passes() -> None:
    llm, engine = scripted_llm(self_check_respond(["no", "yes", "no", "yes", "yes"]))
    proof, transcript = await run_scaffold(SelfCheck(passes=2, failures=10, max_iterations=30), Models(llm))
    assert steps(transcript) == [
        "solve", "improve",
        "verify/1", "classify/1", "correct/1",
        "verify/2", "classify/2",
        "verify/3", "classify/3", "correct/3",
        "verify/4", "classify/4",
        "verify/5", "classify/5",
    ]  # fmt: skip
    assert proof.endswith("corrected-2")
    verify = engine.requests[2]["messages"]
    assert verify[0]["role"] == "system" and "IMO grader" in verify[0]["content"]
    assert "improved" in verify[1]["content"] and "sketch" not in verify[1]["content"]
    correct = engine.requests[4]["messages"]
    assert [m["role"] for m in correct] == ["system", "user", "assistant", "user"]
    assert "step 3 is wrong" in correct[-1]["content"] and "long log" not in correct[-1]["content"]
    assert "improved" in correct[2]["content"]


async def test_self_check_gives_up_after_m_consecutive_failures() -> None:
    llm, _ = scripted_llm(self_check_respond(["no"] * 10))
    proof, transcript = await run_scaffold(SelfCheck(passes=2, failures=3, max_iterations=30), Models(llm))
    assert steps(transcript) == [
        "solve", "improve",
        "verify/1", "classify/1", "correct/1",
        "verify/2", "classify/2", "correct/2",
        "verify/3", "classify/3", "correct/3",
    ]  # fmt: skip
    assert proof.endswith("corrected-3")  # the last rejected solution is corrected before giving up
    llm, engine = scripted_llm(self_check_respond(["no"] * 10))
    proof, _ = await run_scaffold(SelfCheck(passes=2, failures=3, return_if_not_found=False), Models(llm))
    assert proof == "" and engine.kinds.count("sc_correct") == 2  # nothing to return: no last correction


async def test_self_check_corrects_the_last_rejected_solution_at_max_iterations() -> None:
    # Issue 10, item 4: as in QED-Nano's code the correction precedes the stop rules (92 calls at most).
    llm, _ = scripted_llm(self_check_respond(["yes", "no"]))
    proof, transcript = await run_scaffold(SelfCheck(passes=5, failures=10, max_iterations=2), Models(llm))
    assert steps(transcript)[-3:] == ["verify/2", "classify/2", "correct/2"]
    assert proof.endswith("corrected-1")
    llm, _ = scripted_llm(self_check_respond(["no"] * 30))
    _, transcript = await run_scaffold(SelfCheck(passes=5, failures=30, max_iterations=30), Models(llm))
    assert len(transcript) == 2 + 3 * 30


async def test_self_check_stops_at_max_iterations() -> None:
    llm, _ = scripted_llm(self_check_respond(["no", "yes"] * 10))
    proof, transcript = await run_scaffold(SelfCheck(passes=5, failures=10, max_iterations=4), Models(llm))
    assert len([s for s in steps(transcript) if s.startswith("verify/")]) == 4
    assert steps(transcript)[-2:] == ["verify/4", "classify/4"]
    assert len(transcript) == 2 + 4 * 2 + 2  # two failed iterations were corrected
    assert proof.endswith("corrected-2")


async def test_self_check_uses_the_verifier_role() -> None:
    policy, pe = scripted_llm(self_check_respond([]))
    verifier, ve = scripted_llm(self_check_respond(["yes"]))
    await run_scaffold(SelfCheck(passes=1), Models(policy, verifier=verifier))
    assert pe.kinds == ["sc_solve", "sc_improve"] and ve.kinds == ["sc_verify", "sc_classify"]


# ---------------------------------------------------------------------------- nomos


def test_nomos_parsers() -> None:
    assert parse_score("ok \\boxed{3} then \\boxed{ 6 }") == 6
    assert parse_score("\\boxed{9}") is None and parse_score("seven") is None
    assert parse_keep("<keep>[3, 1, 3, 40]</keep>", 5) == [2, 0]
    assert parse_keep("<keep>[1]</keep> changed my mind <keep>[2]</keep>", 3) == [1]
    assert parse_keep("no tag", 3) == [0, 1, 2]
    assert parse_keep("<keep>[]</keep>", 2) == [0, 1]


SHOWN = r"### Submission \d+\n\n[^\n]*\n\n<<<BEGIN SUBMISSION \d+ \w+>>>\nsolution-(\d+)"
"""A submission as the consolidation prompt shows it: heading, fence explanation, marker, text."""


def nomos_respond(scores: dict[int, str], keep: str = "", empty: set[int] = frozenset()):
    solves = itertools.count()

    def respond(kind: str, messages: list[dict]) -> str:
        text = messages[-1]["content"]
        if kind == "solve":
            n = next(solves)
            return "" if n in empty else f"solution-{n}"
        if kind == "score":
            n = int(re.search(r"solution-(\d+)", text).group(1))
            return f"Looks {n}. {scores.get(n, 'no score')}"
        if kind == "consolidate":
            return keep
        assert kind == "tournament"
        a, b = (int(x) for x in re.findall(r"solution-(\d+)", text))
        return f"<verdict>{1 if a > b else 2}</verdict>"

    return respond


async def test_nomos_keeps_top_scores_consolidates_and_runs_the_tournament() -> None:
    scores = {n: f"\\boxed{{{n % 7}}}" for n in range(16)}  # 6 and 13 score 6; nobody is perfect
    scores[3] = "\\boxed{12}"  # out of range: counts 0
    llm, engine = scripted_llm(nomos_respond(scores, keep="<keep>[2, 5, 99]</keep>", empty={15}))
    proof, transcript = await run_scaffold(Nomos(), Models(llm))
    # 16 solves, 15 scores (the empty solution is not scored), 1 consolidation, 1 match.
    assert engine.kinds.count("solve") == 16 and engine.kinds.count("score") == 15
    assert engine.kinds.count("consolidate") == 1 and engine.kinds.count("tournament") == 1
    assert len(transcript) == 33
    consolidate = engine.requests[engine.kinds.index("consolidate")]["messages"][0]["content"]
    shown = [int(n) for n in re.findall(SHOWN, consolidate)]
    # Top 12 by score, ties to the lower index: 6,13 (6); 5,12 (5); 4,11; 10; 2,9; 1,8; 0 (one of 0/7/14/3/15).
    assert shown == [6, 13, 5, 12, 4, 11, 10, 2, 9, 1, 8, 0]
    assert "Grader feedback for submission 1" in consolidate and "Looks 6." in consolidate
    # <keep>[2, 5, 99]</keep> keeps submissions 2 and 5 (solution-13 and solution-4); 13 wins.
    assert proof == "solution-13"


async def test_nomos_keeps_only_perfect_when_enough() -> None:
    scores = {n: "\\boxed{7}" if n < 10 else "\\boxed{6}" for n in range(16)}
    llm, engine = scripted_llm(nomos_respond(scores, keep="I keep everyone."))
    verifier, ve = scripted_llm(nomos_respond(scores, keep="I keep everyone."))
    proof, transcript = await run_scaffold(Nomos(), Models(llm, verifier=verifier))
    assert engine.kinds == ["solve"] * 16
    consolidate = ve.requests[ve.kinds.index("consolidate")]["messages"][0]["content"]
    assert re.findall(SHOWN, consolidate) == [str(n) for n in range(10)]
    assert ve.kinds.count("tournament") == 9  # 10 perfect kept, no tag keeps all: 9 matches
    assert len(transcript) == 16 + 16 + 1 + 9
    assert proof == "solution-9"


async def test_nomos_small_pool_skips_the_tournament() -> None:
    llm, engine = scripted_llm(nomos_respond({0: "\\boxed{2}", 1: "\\boxed{5}"}, keep="<keep>[2]</keep>"))
    proof, transcript = await run_scaffold(Nomos(samples=2, keep=2), Models(llm))
    # Kept in score order (solution-1, solution-0); the consolidation keeps submission 2 alone.
    assert proof == "solution-0" and "tournament" not in engine.kinds and len(transcript) == 5


def test_nomos_rejects_keep_above_samples() -> None:
    with pytest.raises(ValueError, match="keep"):
        Nomos(samples=4, keep=5)
