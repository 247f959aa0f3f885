"""The built-in teacher: proofs (imperfect ones included) for the SFT set, written from the prompt alone.

The generate stage of the BUILTIN flow's DATA half (`qednano generate` -> `grade` -> `export`):
the `builtin-teacher` engine (`llm/teacher_engine.py`) answers each chat request with
`answer()`, so the teacher's text passes through the `LLM` class (call cache, token
accounting, truncation at `max_tokens`) like any model's. The teacher reads the instance
from the prompt (the statement lines, wherever they are), finds a derivation (`domain.solve`)
and writes it; with probability `error_rate` it makes one mistake of a kind drawn from
`errors`, as the paper's distillation data is not all correct either:

- `skip_justification`: one step states its fact with no rule cited;
- `wrong_citation`: one step cites another rule (a trap for the same fact when there is one);
- `distractor_step`: one valid but irrelevant step (a dead-end rule) is inserted;
- `truncate`: the proof stops after a random number of steps, without `qed`;
- `invalid_step`: one step claims a false fact by a rule that would conclude it, one of whose
  premises is established (a trap taken at face value).

With `think`, the proof is preceded by a backward search trace (`need FACT`, `try STEP`,
`got STEP`, `fail FACT` lines, each STEP written as the rule it tries, dead ends included)
and `</think>`: the reasoning that a model recipe with
`reasoning_delimiter: </think>` splits off, whose length grows with the traps on the way.
A summarise request (the RC summariser's: a prompt with a `candidate :` line, as in
`prompts/builtin_rc_summarize.md`, or a `### LATEST CANDIDATE SOLUTION` heading) is answered
with the steps the existing summary carried and those the candidate established or its trace
got, each rightly cited, one a line (`known : STEP`); a solve prompt that carries such a
summary gets a trace that does not search those facts again and a proof that opens with the
summary's steps, which is how Reasoning Cache lets a later turn finish within its budget and
keep what an earlier turn proved. An aggregation request (RSA's, `prompts/builtin_rsa_aggregate.md`:
candidates under `---- Candidate i ----` lines) is answered the same way, its candidates' steps that
hold standing for the summary: they open the proof, rightly cited, and the search goes on from them.
A knockout match (RSA's tournament, `prompts/builtin_tournament.md`: two proofs, each fenced as
`scaffolds/tournament.py` sends them) is refereed exactly, never with a mistake: each proof's
lines, each followed by the checker's verdict (`... ok`, `... wrong`, ...), `qed` or `no qed`, its
score by the problem's rubric (`score N`), then `<verdict>1</verdict>`, `2` or `tie`, so the SFT set teaches the prover
to referee its own tournament.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from qednano.builtin.check import check
from qednano.builtin.domain import STEP, Instance, Step, parse_statement, rubric, search, solve, with_reference
from qednano.prompts import CANDIDATE

ERRORS = ("skip_justification", "wrong_citation", "distractor_step", "truncate", "invalid_step")
CANDIDATES = ("candidate :", "### LATEST CANDIDATE SOLUTION")
"""What marks a summarise request: the built-in summary template's line, or the generic template's heading."""
NO_PROBLEM = "I cannot find a built-in problem (given, goal) in this prompt."
AGGREGATE = CANDIDATE.split("{}")[0]
"""What marks an aggregation request: the line above each of its candidates (`prompts.CANDIDATE`)."""
KNOWN = "known :"
"""What opens a summary, wherever it sits in the prompt (`summary : known : STEP`, then one step a line)."""
MATCH = re.compile(r"<<<BEGIN (PROOF [12]) (\w+)>>>\n(.*?)\n?<<<END \1 \2>>>", re.S)
"""One of a knockout match's two proofs, fenced (`grading/fence.py`)."""
MARKS = {
    "invalid step": "invalid",
    "unjustified conclusion": "unjustified",
    "wrong citation": "wrong",
    "distractor step": "distractor",
}
"""The word a referee's trace gives each of the checker's line verdicts (`ok` stays `ok`)."""


def justified(instance: Instance, line: str, established: set[str]) -> Step | None:
    """The step `line` states, rightly cited (its own rule if that one justifies it), when its fact is new and follows."""
    m = STEP.match(" ".join(line.split()))
    if m is None or m.group(1) in established:
        return None
    fact = m.group(1)
    justifying = [r for r in instance.rules if r.head == fact and set(r.body) <= established]
    if not justifying:
        return None
    rule = next((r for r in justifying if r.name == m.group(2)), justifying[0])
    return Step(fact, rule.name, rule.body)


def known_steps(text: str, instance: Instance) -> list[Step]:
    """The steps a summary in `text` carries (after `known :`, one a line) that hold in order (the teacher checks)."""
    established = set(instance.given)
    out: list[Step] = []
    lines = text.splitlines()
    for i, raw in enumerate(lines):
        _, found, rest = raw.partition(KNOWN)
        if not found:
            continue
        for line in [rest, *lines[i + 1 :]]:
            if STEP.match(" ".join(line.split())) is None:
                break
            step = justified(instance, line, established)
            if step is not None:
                out.append(step)
                established.add(step.fact)
    return out


def with_error(instance: Instance, steps: list[Step], kind: str, rng: random.Random) -> list[Step] | None:
    """`steps` with one mistake of `kind`; None when this proof offers no place for it."""
    i = rng.randrange(len(steps))
    step = steps[i]
    if kind == "skip_justification":
        return [*steps[:i], Step(step.fact, None, ()), *steps[i + 1 :]]
    if kind == "wrong_citation":
        traps = [r.name for r in instance.rules if r.head == step.fact and r.name != step.rule]
        others = [r.name for r in instance.rules if r.name != step.rule]
        if not others:
            return None
        return [*steps[:i], replace(step, rule=rng.choice(traps or others)), *steps[i + 1 :]]
    if kind == "distractor_step":
        useful = instance.useful()
        places = []
        for at in range(len(steps) + 1):
            known = set(instance.given) | {s.fact for s in steps[:at]}
            places += [(at, r) for r in instance.rules if set(r.body) <= known and r.head not in known | useful]
        if not places:
            return None
        at, rule = rng.choice(places)
        return [*steps[:at], Step(rule.head, rule.name, rule.body), *steps[at:]]
    if kind == "truncate":
        return steps[: rng.randrange(1, len(steps))] if len(steps) > 1 else None
    if kind == "invalid_step":
        true = instance.derivable()
        places = []
        for at in range(len(steps) + 1):
            known = set(instance.given) | {s.fact for s in steps[:at]}
            places += [(at, r) for r in instance.rules if r.head not in true and set(r.body) & known]
        if not places:
            return None
        at, rule = rng.choice(places)
        return [*steps[:at], Step(rule.head, rule.name, rule.body), *steps[at:]]
    raise ValueError(f"unknown teacher error {kind!r} (known: {', '.join(ERRORS)})")


def steps_that_hold(candidate: str, instance: Instance, prior: list[Step]) -> list[Step]:
    """`prior`, then the candidate's new steps the goal can use, rightly cited, up to its `qed`.

    A candidate's step counts when it is a proof line or a trace's `got` line whose fact
    follows from what is established above it, whatever rule it cited; it is written with a
    rule that justifies it, so the next turn can copy it into its proof.
    """
    established = set(instance.given) | {s.fact for s in prior}
    useful = instance.useful()
    steps = list(prior)
    for text in candidate.splitlines():
        words = text.split()
        if words == ["qed"]:
            break
        step = justified(instance, " ".join(words[1:] if words[:1] == ["got"] else words), established)
        if step is not None and step.fact in useful:
            steps.append(step)
            established.add(step.fact)
    return steps


def summary(instance: Instance, candidate: str, prior: list[Step]) -> str:
    """The `prior` summary's steps and the candidate's steps that hold, one a line (`known : ...`)."""
    steps = steps_that_hold(candidate, instance, prior)
    return KNOWN + " " + ("\n".join(s.line() for s in steps) if steps else "none")


def aggregated_steps(candidates: str, instance: Instance) -> list[Step]:
    """The steps that hold of each candidate in turn, each building on those before it."""
    steps: list[Step] = []
    for candidate in candidates.split(AGGREGATE):
        steps = steps_that_hold(candidate, instance, steps)
    return steps


def referee(instance: Instance, proofs: list[str]) -> tuple[list[str], str]:
    """The check of a match's proofs (each step line, then its verdict; then the score) and the `<verdict>` line."""
    trace, scores = [], []
    for n, proof in enumerate(proofs, start=1):
        checked = check(instance.statement(), rubric(instance), proof)
        trace.append(f"proof {n}")
        for line in checked.lines:
            stated = line.text if STEP.match(line.text) else "line"
            trace.append(" ".join([stated, *(MARKS.get(v, v) for v in line.verdict.split("+"))]))
        trace.append("qed" if checked.concluded else "no qed")
        points = checked.points or 0.0
        trace.append(f"score {points:g}")
        scores.append(points)
    verdict = "tie" if scores[0] == scores[1] else "1" if scores[0] > scores[1] else "2"
    return trace, f"<verdict>{verdict}</verdict>"


def answer(
    prompt: str, rng: random.Random, *, error_rate: float = 0.0, errors: tuple[str, ...] = ERRORS, think: bool = False
) -> tuple[str, str | None]:
    """The teacher's reply to one prompt, and the mistake it made (None for a clean proof)."""
    match = list(MATCH.finditer(prompt))
    if len(match) == 2:
        stated = parse_statement(prompt[: match[0].start()])
        instance = with_reference(stated) if stated is not None else None
        if instance is None:
            return NO_PROBLEM, None
        trace, verdict = referee(instance, [m.group(3) for m in match])
        return "\n".join((["<think>", *trace, "</think>"] if think else trace) + [verdict]), None
    head, candidate = prompt, ""
    for marker in CANDIDATES:
        if marker in prompt:
            head, _, candidate = prompt.partition(marker)
            break
    head, _, aggregated = head.partition(AGGREGATE)
    instance = parse_statement(head)
    if instance is None:
        return NO_PROBLEM, None
    prior = aggregated_steps(aggregated, instance) if aggregated else known_steps(head, instance)
    if candidate:
        # A thinking teacher opens and closes an empty thought, so the summary is its final text.
        return ("<think>\n</think>\n" if think else "") + summary(instance, candidate, prior), None
    if solve(instance) is None:
        return "The goal does not follow from the given facts.\nqed", None
    trace, found = search(instance, [s.fact for s in prior])
    steps = [*prior, *found]  # the summary's steps first, then what this turn's search got
    made = None
    if errors and rng.random() < error_rate:
        kinds = list(errors)
        rng.shuffle(kinds)
        for kind in kinds:  # the first kind this proof has room for
            changed = with_error(instance, steps, kind, rng)
            if changed is not None:
                steps, made = changed, kind
                break
    body = [s.line() for s in steps] + ([] if made == "truncate" else ["qed"])
    reasoning = ["<think>", *trace, "</think>"] if think else []
    return "\n".join(reasoning + body), made
