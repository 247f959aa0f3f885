"""Decontamination: training problems that match a benchmark problem are dropped (QED-Nano section 3, step 3).

The paper excludes every problem from 2025 competitions and runs fuzzy string matching
against IMO-ProofBench and ProofBench. Here, per training problem and benchmark:

1. `years`: a year range (default: up to 2024, so 2025 is excluded); problems with no known
   year are kept unless `drop_unknown_year`.
2. exact match of the raw statements, then of the normalised ones (`normalise`: case,
   whitespace, `$`/`\\(`/`\\[` delimiters, LaTeX spacing and sizing commands, `\\dfrac`, problem
   numbering such as `Problem 3.`, `(a)`, `P2:`);
3. candidates from an inverted index of word n-grams (`ngram`, default 3) of the benchmark
   problems, n-grams that occur in many benchmark problems left out, so a training problem is
   compared only with benchmark problems it shares n-grams with (`min_shared`);
4. each candidate is scored by rapidfuzz (`max(ratio, token_sort_ratio)` on the normalised
   texts, 0..100) and by n-gram containment (the share of the benchmark problem's n-grams found
   in the training problem); a problem is contaminated when `fuzzy >= fuzzy_threshold` or
   `containment >= ngram_threshold`;
5. optionally, cosine similarity of sentence embeddings (`embeddings.model_path`, a local
   sentence-transformers model; skipped with a note when the package is not installed).

`ContaminationReport` holds, per benchmark, how many training problems matched at each
threshold of `report_fuzzy` and `report_ngram`, and the matched pairs side by side
(`contamination.md`, `contamination.json` in the curate run).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from pydantic import Field

from qednano.config import ConfigError, Strict
from qednano.records import Problem

log = logging.getLogger(__name__)

DELIMITERS = re.compile(
    r"\$+|\\\(|\\\)|\\\[|\\\]|\\begin\{(?:equation|align|gather)\*?\}|\\end\{(?:equation|align|gather)\*?\}"
)
SPACING = re.compile(
    r"\\(?:[,;:! ]|quad|qquad|displaystyle|textstyle|left|right|big|Big|bigg|Bigg|middle|mathrm|text|textrm|operatorname)(?![a-zA-Z])|~"
)
NUMBERING = re.compile(
    r"^\s*(?:\**\s*(?:problem|question|exercise|task|p)\s*[#.]?\s*\d+[a-z]?\s*[.:)\-]?\**|\(?\d{1,3}[a-z]?[.)]|\([a-z]\))\s*",
    re.I,
)
NUMBER_WORDS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]
CANONICAL = {
    **{w: str(i) for i, w in enumerate(NUMBER_WORDS)},
    **dict.fromkeys(("show", "demonstrate", "verify", "establish"), "prove"),
    **dict.fromkeys(("determine", "compute", "calculate"), "find"),
    "whose": "with",
}
"""Words a rewording swaps freely, mapped to one spelling (number words to digits, `show` to `prove`)."""
TOKEN = re.compile(r"\\[a-zA-Z]+|[a-zA-Z]+|\d+|[^\sa-zA-Z\d{}]")


def normalise(text: str) -> str:
    """The statement in a canonical form: what formatting, numbering and delimiters change is removed."""
    s = NUMBERING.sub("", text.strip())
    s = (
        s.replace("\\dfrac", "\\frac")
        .replace("\\tfrac", "\\frac")
        .replace("\\le ", "\\leq ")
        .replace("\\ge ", "\\geq ")
    )
    s = DELIMITERS.sub(" ", s)
    s = SPACING.sub(" ", s)
    return " ".join(CANONICAL.get(t, t) for t in TOKEN.findall(s.lower()))


def grams(norm: str, n: int) -> set[str]:
    words = norm.split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return set(map(" ".join, zip(*(words[i:] for i in range(n)), strict=False)))


class YearRange(Strict):
    """Which competition years may be trained on (the paper excludes 2025)."""

    min: int | None = None
    max: int | None = 2024
    drop_unknown_year: bool = False


class Embeddings(Strict):
    """Optional embedding similarity with a local sentence-transformers model."""

    model_path: str
    threshold: float = Field(default=0.92, gt=0, le=1)
    batch_size: int = Field(default=64, ge=1)


class Decontamination(Strict):
    """How training problems are matched against the benchmarks' problems."""

    enabled: bool = True
    years: YearRange = Field(default_factory=YearRange)
    ngram: int = Field(default=3, ge=1, le=8)
    fuzzy_threshold: float = Field(default=85.0, ge=0, le=100)
    ngram_threshold: float = Field(default=0.7, gt=0, le=1)
    min_shared: float = Field(default=0.3, ge=0, le=1)
    """A candidate shares at least this share of the benchmark problem's n-grams (and at least 2)."""
    max_df: float = Field(default=0.05, gt=0, le=1)
    """N-grams found in more than this share of the benchmark problems (and more than 5) are not indexed."""
    report_fuzzy: list[float] = Field(default_factory=lambda: [70.0, 80.0, 85.0, 90.0, 95.0])
    report_ngram: list[float] = Field(default_factory=lambda: [0.3, 0.5, 0.7, 0.9])
    max_pairs: int = Field(default=25, ge=0)
    """Matched pairs shown per benchmark in contamination.md (all are in contamination.json)."""
    embeddings: Embeddings | None = None


@dataclass
class Match:
    """One training problem's closest benchmark problem, with its scores."""

    train_id: str
    benchmark: str
    bench_id: str
    kind: str
    """`exact`, `normalised`, `fuzzy`, `ngram`, `embedding`, or `near` (scored, under every threshold)."""
    fuzzy: float
    containment: float
    train_text: str
    bench_text: str
    embedding: float | None = None

    @property
    def contaminated(self) -> bool:
        return self.kind != "near"


@dataclass
class Index:
    """The benchmark problems of one benchmark, indexed by normalised text and word n-grams."""

    label: str
    problems: list[Problem]
    n: int
    max_df: float
    norms: list[str] = field(default_factory=list)
    grams: list[set[str]] = field(default_factory=list)
    postings: dict[str, list[int]] = field(default_factory=dict)
    raw: dict[str, int] = field(default_factory=dict)
    exact: dict[str, int] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.norms = [normalise(p.statement) for p in self.problems]
        self.grams = [grams(s, self.n) for s in self.norms]
        self.raw = {p.statement.strip(): i for i, p in enumerate(self.problems)}
        self.exact = {s: i for i, s in enumerate(self.norms)}
        self.sizes = [len(gs) for gs in self.grams]
        df: Counter[str] = Counter(g for gs in self.grams for g in gs)
        limit = max(5, self.max_df * len(self.problems))
        for i, gs in enumerate(self.grams):
            for g in gs:
                if df[g] <= limit:
                    self.postings.setdefault(g, []).append(i)

    def candidates(self, train_grams: set[str], min_shared: float) -> list[tuple[int, int]]:
        """(benchmark index, shared n-grams) for the benchmark problems worth scoring."""
        postings = self.postings
        shared = Counter(chain.from_iterable(postings[g] for g in train_grams if g in postings))
        sizes = self.sizes
        return [(i, c) for i, c in shared.items() if c >= 2 and c >= min_shared * sizes[i]]


def best_match(problem: Problem, index: Index, config: Decontamination) -> Match | None:
    """The closest benchmark problem of `index` to `problem`, or None when nothing comes near."""
    try:
        from rapidfuzz import fuzz
    except ImportError:
        raise ConfigError("decontamination needs the `rapidfuzz` package: pip install 'qednano[data]'") from None

    def match(i: int, kind: str, fuzzy: float, containment: float) -> Match:
        bench = index.problems[i]
        return Match(problem.id, index.label, bench.id, kind, fuzzy, containment, problem.statement, bench.statement)

    raw = index.raw.get(problem.statement.strip())
    if raw is not None:
        return match(raw, "exact", 100.0, 1.0)
    norm = normalise(problem.statement)
    same = index.exact.get(norm)
    if same is not None:
        return match(same, "normalised", 100.0, 1.0)
    train_grams = grams(norm, index.n)
    best: Match | None = None
    low = min([*config.report_fuzzy, config.fuzzy_threshold])
    for i, _ in index.candidates(train_grams, config.min_shared):
        other = index.norms[i]
        # score_cutoff lets rapidfuzz stop early on pairs that cannot reach the lowest reported threshold
        fuzzy = max(fuzz.ratio(norm, other, score_cutoff=low), fuzz.token_sort_ratio(norm, other, score_cutoff=low))
        containment = len(train_grams & index.grams[i]) / max(1, len(index.grams[i]))
        hit = fuzzy >= config.fuzzy_threshold or containment >= config.ngram_threshold
        kind = ("fuzzy" if fuzzy >= config.fuzzy_threshold else "ngram") if hit else "near"
        if not hit and fuzzy < low and containment < min([*config.report_ngram, config.ngram_threshold]):
            continue
        found = match(i, kind, round(fuzzy, 1), round(containment, 3))
        if best is None or (found.contaminated, found.fuzzy, found.containment) > (
            best.contaminated,
            best.fuzzy,
            best.containment,
        ):
            best = found
    return best


def embedding_matches(
    problems: list[Problem], indexes: list[Index], config: Embeddings
) -> tuple[dict[tuple[str, str], Match], str]:
    """(train id, benchmark) -> embedding match at or above the threshold; and a note (why skipped)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        note = (
            "embedding similarity skipped: sentence-transformers is not installed (pip install 'qednano[embeddings]')"
        )
        log.warning(note)
        return {}, note
    model = SentenceTransformer(config.model_path)
    train = model.encode(
        [p.statement for p in problems], batch_size=config.batch_size, normalize_embeddings=True, convert_to_numpy=True
    )
    out: dict[tuple[str, str], Match] = {}
    for index in indexes:
        bench = model.encode(
            [p.statement for p in index.problems],
            batch_size=config.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        sims = train @ bench.T
        for t, row in enumerate(sims):
            b = int(row.argmax())
            if float(row[b]) >= config.threshold:
                p, q = problems[t], index.problems[b]
                out[p.id, index.label] = Match(
                    p.id, index.label, q.id, "embedding", 0.0, 0.0, p.statement, q.statement, round(float(row[b]), 4)
                )
    return out, f"embedding similarity with {config.model_path} (threshold {config.threshold})"


@dataclass
class ContaminationReport:
    """Per benchmark: the closest matches of training problems and the counts at each threshold."""

    config: Decontamination
    sizes: dict[str, int]
    matches: list[Match]
    notes: list[str] = field(default_factory=list)

    def counts(self, label: str) -> dict[str, Any]:
        mine = [m for m in self.matches if m.benchmark == label]
        return {
            "benchmark_problems": self.sizes[label],
            "exact": sum(m.kind == "exact" for m in mine),
            "normalised": sum(m.kind == "normalised" for m in mine),
            "fuzzy": {f">={t:g}": sum(m.fuzzy >= t for m in mine) for t in self.config.report_fuzzy},
            "ngram": {f">={t:g}": sum(m.containment >= t for m in mine) for t in self.config.report_ngram},
            "embedding": sum(m.kind == "embedding" for m in mine),
            "contaminated": sum(m.contaminated for m in mine),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "thresholds": {"fuzzy": self.config.fuzzy_threshold, "ngram": self.config.ngram_threshold},
            "notes": self.notes,
            "benchmarks": {label: self.counts(label) for label in self.sizes},
            "matches": [m.__dict__ for m in self.matches],
        }

    def markdown(self) -> str:
        c = self.config
        lines = [
            "# Contamination report",
            "",
            f"A training problem is dropped when it equals a benchmark problem (raw or normalised), or its "
            f"fuzzy score is >= {c.fuzzy_threshold:g}, or it holds >= {c.ngram_threshold:g} of the benchmark "
            f"problem's {c.ngram}-grams. Counts are training problems whose closest match reaches each threshold.",
            "",
            *[f"- {note}" for note in self.notes],
            "",
        ]
        for label in self.sizes:
            k = self.counts(label)
            lines += [
                f"## {label} ({k['benchmark_problems']} problems)",
                "",
                "| exact | normalised | "
                + " | ".join(f"fuzzy {t}" for t in k["fuzzy"])
                + " | "
                + " | ".join(f"{c.ngram}-gram {t}" for t in k["ngram"])
                + " | embedding | dropped |",
                "|" + "---|" * (4 + len(k["fuzzy"]) + len(k["ngram"])),
                f"| {k['exact']} | {k['normalised']} | "
                + " | ".join(str(v) for v in k["fuzzy"].values())
                + " | "
                + " | ".join(str(v) for v in k["ngram"].values())
                + f" | {k['embedding']} | {k['contaminated']} |",
                "",
            ]
            pairs = sorted((m for m in self.matches if m.benchmark == label), key=lambda m: (-m.fuzzy, -m.containment))
            if pairs:
                lines += ["| kind | fuzzy | n-gram | training problem | benchmark problem |", "|---|---|---|---|---|"]
                for m in pairs[: c.max_pairs]:
                    lines.append(
                        f"| {m.kind} | {m.fuzzy:g} | {m.containment:.2f} | `{m.train_id}` {cell(m.train_text)} "
                        f"| `{m.bench_id}` {cell(m.bench_text)} |"
                    )
                lines.append("")
        return "\n".join(lines)


def cell(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split()).replace("|", "\\|")
    return flat if len(flat) <= limit else flat[:limit] + "..."


def in_years(problem: Problem, years: YearRange) -> str | None:
    """Why a problem is outside the year range, or None."""
    year = problem.metadata.get("year")
    if not isinstance(year, int):
        return "unknown year" if years.drop_unknown_year else None
    if years.max is not None and year > years.max:
        return f"year {year} > {years.max}"
    if years.min is not None and year < years.min:
        return f"year {year} < {years.min}"
    return None


def decontaminate(
    problems: list[Problem], benchmarks: dict[str, list[Problem]], config: Decontamination
) -> tuple[list[Problem], list[tuple[Problem, str]], ContaminationReport]:
    """(kept, dropped with the reason, report): every problem matched against every benchmark."""
    indexes = [Index(label, list(found), config.ngram, config.max_df) for label, found in benchmarks.items()]
    report = ContaminationReport(config, {i.label: len(i.problems) for i in indexes}, [])
    by_embedding: dict[tuple[str, str], Match] = {}
    if config.embeddings is not None:
        by_embedding, note = embedding_matches(problems, indexes, config.embeddings)
        report.notes.append(note)
    kept, dropped = [], []
    for problem in problems:
        found = [m for m in (best_match(problem, i, config) for i in indexes) if m is not None]
        for index in indexes:
            extra = by_embedding.get((problem.id, index.label))
            if extra is not None and not any(m.benchmark == index.label and m.contaminated for m in found):
                found = [m for m in found if m.benchmark != index.label] + [extra]
        report.matches.extend(found)
        hits = [m for m in found if m.contaminated]
        if hits:
            dropped.append((problem, "; ".join(describe(m) for m in hits)))
        else:
            kept.append(problem)
    return kept, dropped, report


def describe(m: Match) -> str:
    if m.kind == "embedding":
        return f"{m.benchmark} {m.bench_id}: embedding {m.embedding}"
    return f"{m.benchmark} {m.bench_id}: {m.kind} (fuzzy {m.fuzzy:g}, {m.containment:.2f} of n-grams)"
