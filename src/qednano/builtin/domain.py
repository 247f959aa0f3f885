"""The built-in proof domain: prove the value of a wire in a fixed Boolean circuit from its inputs, one Horn rule a step.

The BUILTIN flow's problems (ARCHITECTURE, flow BUILTIN): `generate(seed, difficulty)` builds
one `Instance` deterministically from its seed; `source.py` turns it into a `Problem` with
its statement, reference proof (`solution`), and `rubric()` in the canonical rubric form
(`grading/rubrics.py`), which `check.py` then applies exactly. This module imports nothing
of the package: the engine, judge and source unions above it name the domain in place.

The theory is one fixed circuit (`circuit()`, built from a constant seed): 13 levels of 10
wires, each wire above the inputs an AND or an OR gate of two of the three nearest wires on
the level below. A wire's two values are two facts (`p0` .. `p259`, names shuffled), and each
gate is three Horn rules (`r1` .. `r360`, `theory()`): an AND gate `w` of `a`, `b` gives
`w=1 from a=1 b=1`, `w=0 from a=0` and `w=0 from b=0`; an OR gate the mirror image. A
statement gives one value for each input wire, in wire order, and names the goal, a true fact
of a wire on level `difficulty + 2`:

```
given : p230 p30 p255 p217 p70 p100 p219 p124 p244 p113
goal : p212
```

A proof is one step a line, `FACT by RULE from PREMISES`, in an order where every premise is
given or derived above, ending with `qed`:

```
p239 by r150 from p219
p256 by r264 from p239
p5 by r45 from p239
p212 by r89 from p256 p5
qed
```

Why a fixed theory and not rules listed in each statement: a model of a few million
parameters learns what each rule says from its training proofs (in its weights, as a prover
knows its lemmas), where looking rules up among a statement's lines is an in-context recall
that such a model does not learn on a CPU budget (README, "The built-in prover"). What a proof
must still work out per problem is which facts are true: every needed fact has rules that
would conclude it from a false premise (traps: citing one is a wrong citation, claiming what
only a trap gives is an invalid step), and true facts that the goal does not need are dead
ends (a valid but irrelevant step, which the rubric deducts). Exactly one value of each wire
follows from the inputs, so no fact is both, and the true facts are half the theory's.

The difficulty knob sets the goal's level (3 .. 12), so the proof's length; `proof_steps()`
of the instance is the reference proof's length.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from functools import cache

WIDTH = 10
"""Wires a level."""
WINDOW = 1
"""A gate's inputs are two of the wires within WINDOW places of it (cyclically) on the level below."""
LEVELS = 13
"""Level 0 holds the input wires; levels 1 .. 12 hold gates of two wires on the level below."""
ATOMS = 2 * WIDTH * LEVELS
"""Fact names are p0 .. p259: two values of each of the 130 wires, in a shuffled order."""
MAX_RULES = 3 * WIDTH * (LEVELS - 1)
"""Rule names are r1 .. r360: three rules for each of the 120 gates, in a shuffled order."""
MIN_DIFFICULTY = 1
MAX_DIFFICULTY = 10
THEORY_SEED = "qednano-builtin-theory:1"
SYNTAX = ("given", "goal", ":", "by", "from", "qed", "need", "try", "got", "fail", "known", "none")
"""The domain's own words besides fact and rule names (statements, proofs, search traces, summaries)."""


def vocabulary() -> list[str]:
    """Every whitespace-separated word of the domain's text (the teacher's `<think>` tags and the prompts add theirs)."""
    return [*SYNTAX, *(f"p{i}" for i in range(ATOMS)), *(f"r{i}" for i in range(1, MAX_RULES + 1))]


STEP = re.compile(r"^(p\d+)(?: by (\S+))?(?: from((?: p\d+)+))?$")
"""One proof line: fact, optional `by RULE`, optional `from PREMISES` (`check.py` judges what is missing)."""
GIVEN = re.compile(r"^given :((?: p\d+)+)$")
GOAL = re.compile(r"^goal : (p\d+)$")


@dataclass(frozen=True)
class Rule:
    """A Horn rule of the theory: `head` follows from the facts of `body`, cited as `name`."""

    name: str
    body: tuple[str, ...]
    head: str


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
class Circuit:
    """The theory's circuit: each gate's kind and inputs, and the fact that names each wire value."""

    gates: dict[int, tuple[str, int, int]]
    """Wire -> (`and` or `or`, first input wire, second input wire), for every wire above level 0."""
    names: tuple[str, ...]
    """Fact name of wire w's value v at index 2 * w + v."""

    def fact(self, wire: int, value: int) -> str:
        return self.names[2 * wire + value]

    def evaluate(self, inputs: list[int]) -> list[int]:
        """Every wire's value, given the input wires' values (level 0, in wire order)."""
        values = list(inputs)
        for wire in range(WIDTH, WIDTH * LEVELS):
            kind, a, b = self.gates[wire]
            values.append(values[a] & values[b] if kind == "and" else values[a] | values[b])
        return values


@cache
def circuit() -> Circuit:
    """The one circuit of the theory, built from `THEORY_SEED`."""
    rng = random.Random(THEORY_SEED)
    gates = {}
    for level in range(1, LEVELS):
        for i in range(WIDTH):
            wire = WIDTH * level + i
            near = [WIDTH * (level - 1) + (i + j) % WIDTH for j in range(-WINDOW, WINDOW + 1)]
            a, b = rng.sample(near, 2)
            gates[wire] = (rng.choice(("and", "or")), a, b)
    names = tuple(f"p{i}" for i in rng.sample(range(ATOMS), ATOMS))
    return Circuit(gates, names)


@cache
def theory() -> tuple[Rule, ...]:
    """The theory's rules, in name order (r1, r2, ...): three per gate."""
    c = circuit()
    unnamed: list[tuple[tuple[str, ...], str]] = []
    for wire, (kind, a, b) in c.gates.items():
        strong = 1 if kind == "and" else 0  # the value both inputs must share
        weak = 1 - strong
        unnamed.append(((c.fact(a, strong), c.fact(b, strong)), c.fact(wire, strong)))
        unnamed.append(((c.fact(a, weak),), c.fact(wire, weak)))
        unnamed.append(((c.fact(b, weak),), c.fact(wire, weak)))
    numbers = random.Random(f"{THEORY_SEED}:names").sample(range(1, len(unnamed) + 1), len(unnamed))
    rules = [Rule(f"r{n}", body, head) for n, (body, head) in zip(numbers, unnamed, strict=True)]
    return tuple(sorted(rules, key=lambda r: int(r.name[1:])))


@dataclass(frozen=True)
class Instance:
    """One problem of the domain: given facts, the goal, and the rules (the theory's, unless a test builds its own)."""

    given: tuple[str, ...]
    goal: str
    rules: tuple[Rule, ...] = field(default_factory=theory)
    seed: int = 0
    difficulty: int = 0
    reference: tuple[Step, ...] = field(default=())
    """The derivation the teacher's search finds, in proof order (filled by `with_reference`: `solve` of the instance)."""
    chain: tuple[str, ...] = field(default=())
    """The goal's spine: the first premise of each reference step, down to level 1, then up to the goal."""

    def statement(self) -> str:
        return f"given : {' '.join(self.given)}\ngoal : {self.goal}"

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
        """The two facts of the goal's spine the rubric rewards (about a third and two thirds up)."""
        chain = self.chain
        n = len(chain)
        if n < 3:
            raise ValueError(f"an instance needs a spine of at least 3 facts for its rubric, not {n}")
        first = max(0, round(n / 3) - 1)
        second = min(n - 2, max(first + 1, round(2 * n / 3) - 1))
        return chain[first], chain[second]

    def proof_steps(self) -> int:
        return len(self.reference)

    def proof(self) -> str:
        """The reference proof text."""
        return "\n".join([*(s.line() for s in self.reference), "qed"])


def generate(seed: int, difficulty: int) -> Instance:
    """One instance, a pure function of (seed, difficulty): random inputs, a true fact on level difficulty + 2.

    The inputs' parity (how many are 1, mod 2) is the seed's, so instances of even and of odd
    seeds never share a statement: `source.py` gives training problems even seeds, held-out odd.
    """
    if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty {difficulty} is outside {MIN_DIFFICULTY}..{MAX_DIFFICULTY}")
    rng = random.Random(f"qednano-builtin:{seed}:{difficulty}")
    c = circuit()
    bits = [rng.randrange(2) for _ in range(WIDTH - 1)]
    values = c.evaluate([*bits, (seed + sum(bits)) % 2])  # the inputs' parity is the seed's (source.py: splits)
    level = difficulty + 2
    wire = rng.randrange(WIDTH * level, WIDTH * (level + 1))
    given = tuple(c.fact(w, values[w]) for w in range(WIDTH))
    instance = with_reference(Instance(given, c.fact(wire, values[wire]), seed=seed, difficulty=difficulty))
    assert instance is not None  # the goal is true, so it follows
    return instance


def with_reference(instance: Instance) -> Instance | None:
    """`instance` with its reference proof and the goal's spine (what its rubric rewards); None when the goal does not follow."""
    reference = solve(instance)
    if reference is None:
        return None
    by_fact = {s.fact: s for s in reference}
    spine = [instance.goal]
    while (below := [p for p in by_fact[spine[-1]].premises if p in by_fact]) != []:
        spine.append(below[0])
    return replace(instance, reference=reference, chain=tuple(spine[::-1]))


def parse_statement(text: str) -> Instance | None:
    """The instance written in `text` (its given and goal lines, anywhere in it); None if absent."""
    given: tuple[str, ...] | None = None
    goal = None
    for raw in text.splitlines():
        line = " ".join(raw.split())
        if (m := GIVEN.match(line)) and given is None:
            given = tuple(m.group(1).split())
        elif (m := GOAL.match(line)) and goal is None:
            goal = m.group(1)
    if given is None or goal is None:
        return None
    return Instance(given, goal)


def search(instance: Instance, known: tuple[str, ...] | list[str] = ()) -> tuple[list[str], list[Step]]:
    """A depth-first backward search from the goal, rules tried in name order: its trace lines and the steps it got.

    The trace is `need FACT`, `try STEP`, `got STEP` and `fail FACT` lines, dead ends
    included; the steps are the `got` lines the goal rests on, in order, a derivation of the
    goal when it succeeds. Facts in `known` (carried by a Reasoning Cache summary) count as
    established and are not searched, so a later turn's trace is shorter by what the earlier
    turns found.
    """
    lines: list[str] = []
    steps: list[Step] = []
    state: dict[str, bool] = {f: True for f in (*instance.given, *known)}
    by_head: dict[str, list[Rule]] = {}
    for r in instance.rules:
        by_head.setdefault(r.head, []).append(r)

    def derive(fact: str) -> bool:
        if fact in state:
            return state[fact]
        lines.append(f"need {fact}")
        state[fact] = False  # no rule may lean on a fact still being searched
        for rule in by_head.get(fact, []):
            step = Step(fact, rule.name, rule.body)
            lines.append(f"try {step.line()}")
            if all(derive(p) for p in rule.body):
                state[fact] = True
                lines.append(f"got {step.line()}")
                steps.append(step)
                return True
        lines.append(f"fail {fact}")
        return False

    derive(instance.goal)
    needed, stack = set(), [instance.goal]
    got = {s.fact: s for s in steps}
    while stack:  # a fact got on a branch that failed further up is a dead end, not part of the derivation
        fact = stack.pop()
        if fact in got and fact not in needed:
            needed.add(fact)
            stack += got[fact].premises
    return lines, [s for s in steps if s.fact in needed]


def solve(instance: Instance) -> tuple[Step, ...] | None:
    """The derivation `search` finds (what the teacher proves, its trace's `got` lines); None if the goal fails."""
    _, steps = search(instance)
    proved = {s.fact for s in steps} | set(instance.given)
    return tuple(steps) if instance.goal in proved else None


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
        "A fact is established by a step whose fact follows, by a rule of the theory, from the given facts "
        "and the facts established above it; a step with a citation fault still establishes its fact.\n\n"
        "## Zero-credit items\n"
        "- Restating the given facts or the goal without derived steps.\n"
        "- A proof whose invalid and irrelevant (distractor) steps outnumber its other steps "
        "(for example one copied from another problem).\n"
        f"- Writing qed without establishing the goal {instance.goal}.\n"
        "- Anything after the line qed.\n\n"
        "## Deductions\n"
        f"- -{d['invalid step']}: each line that is not a step, or whose fact does not follow from the facts "
        "established above it by any rule of the theory (invalid step).\n"
        f"- -{d['unjustified conclusion']}: each step that cites no rule (unjustified conclusion).\n"
        f"- -{d['wrong citation']}: each step whose cited rule or premises are not the ones that justify it, "
        "though a rule of the theory does (wrong citation).\n"
        f"- -{d['distractor step']}: each step that repeats an established fact, or establishes a fact that "
        "no derivation of the goal uses (distractor step).\n"
        "- The score never goes below 0.\n"
    )
