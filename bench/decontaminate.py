"""Decontamination at corpus scale: 100,000 synthetic training problems against 1,000 benchmark problems.

    .venv/bin/python bench/decontaminate.py [--train 100000] [--bench 1000] [--planted 300] [--seed 0]

The problems are generated from olympiad-style sentence templates with random names, numbers
and expressions, so unrelated problems share topic vocabulary and phrasing. Among the
training problems, `--planted` are benchmark problems altered three ways: reformatted (`$`
to `\\(...\\)`, extra spaces, `\\dfrac`), renumbered (`Problem 7.`, `(b)`) and reworded (number
words, `Show` for `Prove`, a few words replaced or dropped). `qednano.data.decontaminate`
runs with its default thresholds; the planted problems it flags give the recall, and any
other flagged problem is a false positive. A naive pairwise `difflib` comparison is timed on a
subsample and scaled to the whole corpus for the ratio.

The last line reads `seconds=S recall=R false_positives=F`.
"""

from __future__ import annotations

import argparse
import difflib
import random
import re
import time

from qednano.data.decontaminate import Decontamination, decontaminate
from qednano.records import Problem

SUBJECTS = [
    "Let $ABC$ be an acute triangle with circumcenter $O$ and orthocenter $H$.",
    "Let $ABC$ be a triangle with incenter $I$ and let the incircle touch $BC$ at $D$.",
    "Let $ABCD$ be a cyclic quadrilateral whose diagonals meet at $P$.",
    "Let $n$ be a positive integer.",
    "Let $p$ be an odd prime.",
    "Let $P(x)$ be a polynomial with integer coefficients.",
    "Let $a_1, a_2, \\ldots, a_n$ be positive real numbers.",
    "A set $S$ of lattice points in the plane is given.",
    "Let $f:\\mathbb{R}\\to\\mathbb{R}$ be a function.",
    "A sequence $(x_k)$ of integers is defined by $x_1 = {n1}$.",
    "On a ${n1} \\times {n2}$ board some cells are coloured black.",
    "There are ${n1}$ students in a class, and some pairs of them are friends.",
]
CONDITIONS = [
    "Suppose that ${v1}^{{n1}} + {n2} {v2} = {n3}$.",
    "Assume that the sum of all the numbers equals ${n1}$.",
    "The point ${V1}$ lies on the segment ${V2}{V3}$ with ${V2}{V1} = {n1} \\cdot {V1}{V3}$.",
    "Every two of them have at most ${n1}$ common neighbours.",
    "It is known that $f(x + {n1}) = f(x) + {n2} x$ for all real $x$.",
    "For each $k \\ge {n1}$ we have $x_{k+1} = x_k^2 - {n2} x_k + {n3}$.",
    "No ${n1}$ of the chosen points are collinear.",
    "The product ${v1} {v2} {v3}$ equals ${n1}$.",
    "The line through ${V1}$ parallel to ${V2}{V3}$ meets the circle again at ${V4}$.",
]
GOALS = [
    "Prove that ${v1} + {v2} \\geq {n1}$.",
    "Prove that ${V1}{V2} = {V3}{V4}$.",
    "Prove that there are at least ${n1}$ such configurations.",
    "Determine all values of ${v1}$ for which the statement holds.",
    "Prove that the lines ${V1}{V2}$, ${V3}{V4}$ and ${V5}{V6}$ are concurrent.",
    "Find all such functions.",
    "Prove that ${n1}$ divides ${v1}^{{n2}} - {v1}$.",
    "Show that one can choose ${n1}$ of them with pairwise distinct values.",
    "Prove that the expression $\\frac{{v1}^2 + {n1}}{{v2} + {n2}}$ is never an integer.",
]
ADJECTIVES = [
    "red",
    "blue",
    "green",
    "convex",
    "regular",
    "acute",
    "isosceles",
    "prime",
    "even",
    "odd",
    "distinct",
    "adjacent",
    "opposite",
    "disjoint",
    "finite",
    "infinite",
    "integral",
    "rational",
    "positive",
    "negative",
]
NOUNS = [
    "vertex",
    "edge",
    "circle",
    "chord",
    "tangent",
    "segment",
    "polygon",
    "coin",
    "card",
    "box",
    "token",
    "cell",
    "row",
    "column",
    "digit",
    "divisor",
    "root",
    "coefficient",
    "subset",
    "graph",
    "tournament",
    "player",
]
VERBS = [
    "connected",
    "adjacent",
    "assigned",
    "coloured",
    "matched",
    "paired",
    "opposite",
    "tangent",
    "parallel",
    "perpendicular",
    "attached",
    "equivalent",
]
LETTERS, POINTS = "abcdxyzmnkt", "ABCDEFGHKLMNPQRST"
SWAPS = [("Prove", "Show"), ("Determine", "Find"), (" and ", " as well as "), ("Let ", "Suppose ")]


def fill(text: str, rng: random.Random) -> str:
    def slot(m: re.Match[str]) -> str:
        kind = m.group(1)[0]
        if kind == "n":
            return str(rng.randint(2, 2025))
        if kind == "v":
            return rng.choice(LETTERS)
        return rng.choice(POINTS)

    return re.sub(r"\{([nvV]\d)\}", slot, text)


def context(rng: random.Random) -> str:
    a, b = rng.sample(ADJECTIVES, 2)
    n, m = rng.sample(NOUNS, 2)
    return f"Each {a} {n} is {rng.choice(VERBS)} to exactly ${rng.randint(2, 99)}$ {b} {m}s."


def make_problem(rng: random.Random) -> str:
    conditions = [*rng.sample(CONDITIONS, rng.randint(1, 2)), *(context(rng) for _ in range(rng.randint(1, 2)))]
    rng.shuffle(conditions)
    parts = [rng.choice(SUBJECTS), *conditions, rng.choice(GOALS)]
    return " ".join(fill(p, rng) for p in parts)


def reformat(text: str, rng: random.Random) -> str:
    out, opened = [], False
    for ch in text:
        if ch == "$":
            out.append("\\)" if opened else "\\(")
            opened = not opened
        else:
            out.append(ch)
    return "".join(out).replace(" ", "  ").replace("\\frac", "\\dfrac").replace("=", " = ")


def renumber(text: str, rng: random.Random) -> str:
    return (
        rng.choice([f"Problem {rng.randint(1, 12)}. ", f"{rng.randint(1, 9)}. ", "(b) ", f"P{rng.randint(1, 6)}: "])
        + text
    )


def reword(text: str, rng: random.Random) -> str:
    for a, b in SWAPS:
        text = text.replace(a, b)
    words = text.split(" ")
    for _ in range(max(1, len(words) // 25)):
        i = rng.randrange(len(words))
        if "$" not in words[i]:
            words[i] = rng.choice(["the", "given", "some", "such"])
    return renumber(" ".join(words), rng)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=100_000)
    ap.add_argument("--bench", type=int, default=1_000)
    ap.add_argument("--planted", type=int, default=300)
    ap.add_argument("--baseline-pairs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    bench = [Problem(id=f"B{i}", statement=make_problem(rng)) for i in range(args.bench)]
    alter = [reformat, renumber, reword]
    planted = [
        Problem(id=f"planted-{i}", statement=alter[i % 3](bench[rng.randrange(args.bench)].statement, rng))
        for i in range(args.planted)
    ]
    train = [Problem(id=f"T{i}", statement=make_problem(rng)) for i in range(args.train - args.planted)] + planted
    rng.shuffle(train)

    start = time.perf_counter()
    _, dropped, report = decontaminate(train, {"bench": bench}, Decontamination())
    seconds = time.perf_counter() - start

    flagged = {p.id for p, _ in dropped}
    caught = sum(p.id in flagged for p in planted)
    false_positives = sorted(i for i in flagged if not i.startswith("planted-"))
    by_kind = {
        k: sum(m.kind == k and m.train_id.startswith("planted-") for m in report.matches)
        for k in ("exact", "normalised", "fuzzy", "ngram")
    }
    missed = [p for p in planted if p.id not in flagged]

    sample = [
        (t.statement, b.statement)
        for t, b in zip(
            rng.choices(train, k=args.baseline_pairs), rng.choices(bench, k=args.baseline_pairs), strict=True
        )
    ]
    t0 = time.perf_counter()
    for a, b in sample:
        difflib.SequenceMatcher(None, a, b).ratio()
    per_pair = (time.perf_counter() - t0) / len(sample)
    baseline = per_pair * len(train) * len(bench)

    print(f"corpus: {len(train)} training problems ({len(planted)} planted) against {len(bench)} benchmark problems")
    print(f"decontamination: {seconds:.1f} s; flagged {len(flagged)}; planted caught by kind {by_kind}")
    for name, i in (("reformatted", 0), ("renumbered", 1), ("reworded", 2)):
        group = planted[i::3]
        print(f"  {name}: {sum(p.id in flagged for p in group)}/{len(group)} caught")
    for p in missed[:3]:
        print(f"  missed: {p.statement[:140]}")
    print(
        f"naive pairwise difflib: {per_pair * 1e6:.1f} us/pair on {len(sample)} pairs -> {baseline:.0f} s scaled to {len(train) * len(bench):.2e} pairs"
    )
    print(f"speed-up over the baseline: {baseline / seconds:.0f}x")
    print(f"seconds={seconds:.1f} recall={caught / len(planted):.3f} false_positives={len(false_positives)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
