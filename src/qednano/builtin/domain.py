"""The built-in proof domain: derive a goal fact from given facts with Horn rules, distractors included.

The BUILTIN flow's problems (ARCHITECTURE, flow BUILTIN): `generate(seed, difficulty)` builds
one `Instance` deterministically from its seed; `source.py` turns it into a `Problem` with
its statement, reference proof (`solution`), and `rubric()` in the canonical rubric form
(`grading/rubrics.py`), which `check.py` then applies exactly. This module imports nothing
of the package: the engine, judge and source unions above it name the domain in place.

A statement (every token separated by spaces, one item a line):

```
given : p12 p7 p33
rule : p40 by r1 from p12 p7
rule : p9 by r2 from p40
...
goal : p9
```

A rule is written as the step it licenses (`rule : HEAD by NAME from BODY`), so a proof line,
a search trace line and the rule they use read the same words in the same order: a model of
a few million parameters finds and copies them by matching the words before (induction),
where `NAME : BODY -> HEAD` asked it to look up a rule by the word at its end and copy back.

A proof is one step a line, `FACT by RULE from PREMISES`, in an order where every premise is
given or derived above, ending with `qed`:

```
p40 by r1 from p12 p7
p9 by r2 from p40
qed
```

The derivation the generator plants is a main chain h1 -> h2 -> ... -> goal: each chain rule
needs the previous chain fact, and some also need a side fact (given, or derived in one step
from given facts). Distractor rules make wrong choices possible at every step:

- dead ends: rules that fire from derivable facts but whose conclusions lead nowhere
  (a valid but irrelevant step, which the rubric deducts);
- traps: rules that conclude a needed fact from a premise that can never be derived
  (citing one is a wrong citation; claiming what only a trap would give is an invalid step).

The difficulty knob sets the chain length, the share of side facts and the number of
distractors; `proof_steps()` of the instance is the reference proof's length.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

ATOMS = 100
"""Fact names are p0 .. p99; rule names r1 .. rN in a shuffled order."""
MIN_DIFFICULTY = 1
MAX_DIFFICULTY = 10

MAX_RULES = 99
"""Rule names stay below r100: the most rules an instance has is 2 * chain + traps + dead ends = 66 at difficulty 10."""
SYNTAX = ("given", "rule", "goal", ":", "by", "from", "qed", "need", "try", "got", "fail", "known", "none")
"""The domain's own words besides fact and rule names (statements, proofs, search traces, summaries)."""


def vocabulary() -> list[str]:
    """Every whitespace-separated word of the domain's text (the teacher's `<think>` tags and the prompts add theirs)."""
    return [*SYNTAX, *(f"p{i}" for i in range(ATOMS)), *(f"r{i}" for i in range(1, MAX_RULES + 1))]


STEP = re.compile(r"^(p\d+)(?: by (\S+))?(?: from((?: p\d+)+))?$")
"""One proof line: fact, optional `by RULE`, optional `from PREMISES` (`check.py` judges what is missing)."""
RULE = re.compile(r"^rule : (p\d+) by (r\d+) from((?: p\d+)+)$")
GIVEN = re.compile(r"^given :((?: p\d+)+)$")
GOAL = re.compile(r"^goal : (p\d+)$")


@dataclass(frozen=True)
class Rule:
    """`rule : head by name from body`."""

    name: str
    body: tuple[str, ...]
    head: str

    def line(self) -> str:
        return f"rule : {self.head} by {self.name} from {' '.join(self.body)}"


@dataclass(frozen=True)
class Step:
    """One line of a proof: `fact by rule from premises` (rule or premises may be missing)."""

    fact: str
    rule: str | None
    premises: tuple[str, ...]

    def line(self) -> str:
        out = self.fact
        if self.rule is not None:
            out += f" by {self.rule}"
        if self.premises:
            out += " from " + " ".join(self.premises)
        return out


@dataclass(frozen=True)
class Instance:
    """One problem of the domain: given facts, rules (in statement order) and the goal."""

    given: tuple[str, ...]
    rules: tuple[Rule, ...]
    goal: str
    seed: int = 0
    difficulty: int = 0
    reference: tuple[Step, ...] = field(default=())
    """The planted derivation, in proof order (filled by `generate`; `solve` finds one from the statement)."""
    chain: tuple[str, ...] = field(default=())
    """The main chain's facts in order, ending with the goal (filled by `generate`)."""

    def statement(self) -> str:
        lines = [f"given : {' '.join(self.given)}", *(r.line() for r in self.rules), f"goal : {self.goal}"]
        return "\n".join(lines)

    def rule(self, name: str | None) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def derivable(self) -> set[str]:
        """Every fact that follows from the given facts (forward chaining to a fixed point)."""
        known = set(self.given)
        grew = True
        while grew:
            grew = False
            for r in self.rules:
                if r.head not in known and set(r.body) <= known:
                    known.add(r.head)
                    grew = True
        return known

    def useful(self) -> set[str]:
        """Derivable facts that some derivation of the goal uses (the goal itself included)."""
        known = self.derivable()
        firing = [r for r in self.rules if set(r.body) <= known]
        useful = {self.goal} if self.goal in known else set()
        grew = True
        while grew:
            grew = False
            for r in firing:
                if r.head in useful and not set(r.body) <= useful | set(self.given):
                    useful |= set(r.body)
                    grew = True
        return useful - set(self.given)

    def milestones(self) -> tuple[str, str]:
        """The two intermediate chain facts the rubric rewards (about a third and two thirds in)."""
        chain = self.chain
        n = len(chain)
        if n < 3:
            raise ValueError(f"an instance needs a planted chain of at least 3 facts for its rubric, not {n}")
        first = max(0, round(n / 3) - 1)
        second = min(n - 2, max(first + 1, round(2 * n / 3) - 1))
        return chain[first], chain[second]

    def proof_steps(self) -> int:
        return len(self.reference)

    def proof(self) -> str:
        """The reference proof text."""
        return "\n".join([*(s.line() for s in self.reference), "qed"])


def knobs(difficulty: int) -> dict[str, int | float]:
    """What the difficulty sets: chain length, side-fact share, distractor counts."""
    d = min(MAX_DIFFICULTY, max(MIN_DIFFICULTY, difficulty))
    return {
        "given": 2 + d // 3,
        "chain": 2 + 2 * d,
        "side": 0.15 + 0.04 * d,
        "dead_ends": 1 + d,
        "traps": 1 + d,
    }


def generate(seed: int, difficulty: int) -> Instance:
    """One instance, a pure function of (seed, difficulty)."""
    if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty {difficulty} is outside {MIN_DIFFICULTY}..{MAX_DIFFICULTY}")
    rng = random.Random(f"qednano-builtin:{seed}:{difficulty}")
    k = knobs(difficulty)
    names = [f"p{i}" for i in rng.sample(range(ATOMS), ATOMS)]
    fresh = iter(names)
    given = [next(fresh) for _ in range(int(k["given"]))]
    rules: list[tuple[tuple[str, ...], str]] = []  # (body, head), named later
    reference: list[tuple[tuple[str, ...], str]] = []
    derived: list[str] = []

    def side_fact() -> str:
        if rng.random() < 0.5:
            return rng.choice(given)
        body = tuple(rng.sample(given, rng.choice((1, 2))))
        head = next(fresh)
        rules.append((body, head))
        reference.append((body, head))
        derived.append(head)
        return head

    current = None
    chain: list[str] = []
    for _ in range(int(k["chain"])):
        if current is None:
            body: tuple[str, ...] = tuple(rng.sample(given, min(2, len(given))))
        else:
            body = (current, side_fact()) if rng.random() < float(k["side"]) else (current,)
        head = next(fresh)
        rules.append((body, head))
        reference.append((body, head))
        derived.append(head)
        chain.append(head)
        current = head
    goal = current
    assert goal is not None
    needed = list(derived)
    for _ in range(int(k["traps"])):
        target = rng.choice(needed)
        missing = next(fresh)
        earlier = given + needed[: needed.index(target)]
        rules.append(((rng.choice(earlier), missing), target))
    dead: list[str] = []
    for _ in range(int(k["dead_ends"])):
        source = given + needed[: rng.randrange(1, len(needed) + 1)] + dead
        body = tuple(rng.sample(source, min(len(source), rng.choice((1, 1, 2)))))
        head = next(fresh)
        dead.append(head)
        rules.append((body, head))
    order = rng.sample(range(len(rules)), len(rules))
    named = {order[j]: f"r{j + 1}" for j in range(len(rules))}  # statement position j holds rule order[j]
    rule_of = {rules[i]: named[i] for i in range(len(rules))}
    listed = tuple(Rule(named[i], rules[i][0], rules[i][1]) for i in order)
    steps = tuple(Step(head, rule_of[(body, head)], body) for body, head in reference)
    return Instance(tuple(given), listed, goal, seed, difficulty, steps, tuple(chain))


def parse_statement(text: str) -> Instance | None:
    """The instance written in `text` (its given, rule and goal lines, anywhere in it); None if absent."""
    given: tuple[str, ...] | None = None
    goal = None
    rules = []
    seen: set[str] = set()
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if (m := GIVEN.match(line)) and given is None:
            given = tuple(m.group(1).split())
        elif (m := RULE.match(line)) and m.group(2) not in seen:
            seen.add(m.group(2))
            rules.append(Rule(m.group(2), tuple(m.group(3).split()), m.group(1)))
        elif (m := GOAL.match(line)) and goal is None:
            goal = m.group(1)
    if given is None or goal is None or not rules:
        return None
    return Instance(given, tuple(rules), goal)


def solve(instance: Instance) -> tuple[Step, ...] | None:
    """A shortest-in-practice derivation of the goal: backward from the goal over firing rules, no dead ends.

    Used by the teacher, which sees only the statement. Each needed fact takes the first
    listed rule that fires from derivable facts; None when the goal is not derivable.
    """
    known = instance.derivable()
    if instance.goal not in known:
        return None
    by_head: dict[str, Rule] = {}
    # The rule per fact that reaches it earliest in forward chaining, so the derivation is well-founded.
    have = set(instance.given)
    while len(by_head) < len(known - set(instance.given)):
        for r in instance.rules:
            if r.head not in have and r.head not in by_head and set(r.body) <= have:
                by_head[r.head] = r
        have |= set(by_head)
    out: list[Step] = []
    done = set(instance.given)

    def visit(fact: str) -> None:
        if fact in done:
            return
        rule = by_head[fact]
        for p in rule.body:
            visit(p)
        done.add(fact)
        out.append(Step(fact, rule.name, rule.body))

    visit(instance.goal)
    return tuple(out)


DEDUCTIONS: dict[str, int] = {
    "invalid step": 2,
    "unjustified conclusion": 1,
    "wrong citation": 1,
    "distractor step": 1,
}
"""Points off per faulty step, by fault; the rubric states them and `check.py` reads them back from it."""
CHECKPOINTS = (2, 2, 3)
"""Points for the first milestone, the second milestone and the goal (sum 7)."""


def rubric(instance: Instance) -> str:
    """The marking scheme, in the canonical rubric form (`grading/rubrics.py`), exact enough to apply mechanically."""
    first, second = instance.milestones()
    a, b, c = CHECKPOINTS
    d = DEDUCTIONS
    return (
        f"## Checkpoints ({a + b + c} pts total)\n"
        f"1. [{a} pts] Derives {first}: the steps establish {first} from the given facts.\n"
        f"2. [{b} pts] Derives {second}: the steps establish {second} from the given facts.\n"
        f"3. [{c} pts] Derives the goal {instance.goal}: the steps establish the goal from the given facts.\n"
        f"Total (max {a + b + c})\n"
        "A fact is established by a step whose fact follows, by some given rule, from the given facts "
        "and the facts established above it; a step with a citation fault still establishes its fact.\n\n"
        "## Zero-credit items\n"
        "- Restating the given facts, the rules or the goal without derived steps.\n"
        "- A proof whose invalid steps outnumber its other steps (for example one copied from another problem).\n"
        f"- Writing qed without establishing the goal {instance.goal}.\n"
        "- Anything after the line qed.\n\n"
        "## Deductions\n"
        f"- -{d['invalid step']}: each line that is not a step, or whose fact does not follow from the facts "
        "established above it by any given rule (invalid step).\n"
        f"- -{d['unjustified conclusion']}: each step that cites no rule (unjustified conclusion).\n"
        f"- -{d['wrong citation']}: each step whose cited rule or premises are not the ones that justify it, "
        "though a given rule does (wrong citation).\n"
        f"- -{d['distractor step']}: each step that repeats an established fact, or establishes a fact that "
        "no derivation of the goal uses (distractor step).\n"
        "- The score never goes below 0.\n"
    )
