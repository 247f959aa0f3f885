"""Training-problem sources -> Problems with `source`, `competition` and `year`: the first step of the DATA flow.

A curate recipe's `sources:` is a list of these, each picked by its `source` key:

- `aops`: the AI-MO/aops layout (Art of Problem Solving forum scrape): `problem`, `solution`,
  `candidates` (other posts), `tags` (`origin:aops`, `2022 Contests`, the contest name) and
  `metadata` (`path` under "Contest Collections/...", `answer_score`, `boxed`, ...).
- `olympiads`: the AI-MO/olympiads layout (official competition solutions): `problem`,
  `solution`, and the contest in `exam`/`competition`/`contest`, `year`, `problem_type`.
- `fineproofs-rl`: `lm-provers/FineProofs-RL`, the paper's RL prompts (`problem` or `task`,
  `rubrics` or `schema`, `reward_mean` as the measured difficulty).
- `fineproofs-sft`: `lm-provers/FineProofs-SFT`, the paper's SFT set (`problem`,
  `reasoning_content`, `proof`, `competition` such as `IMO-2023`, `gemini-3-pro-grade`);
  its `examples()` are `SFTExample` rows ready for `qednano sft`.
- `corpus-table`: any local CSV/JSONL/JSON/parquet file or dataset with a column mapping
  (`benchmarks/tables.py`), plus the columns holding the competition and the year.
- `file`: JSONL of `Problem` records (what `qednano curate` writes).

Rows come from `benchmarks/rows.py` (hub id, local copy in the hub layout, or a file), so
every source reads the hub and its local copies alike. Ids are content hashes of the
statement, so the same problem from two sources gets the same id (the duplicate filter
drops the second).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Tag

from qednano.benchmarks.checks import Issues, text
from qednano.benchmarks.proofbench import scheme_text
from qednano.benchmarks.rows import Row
from qednano.benchmarks.sources import ProblemFile, source_tag
from qednano.benchmarks.tables import Table, TableSource
from qednano.builtin.source import BuiltinSource
from qednano.data.schema import SFTExample
from qednano.records import Problem, content_id

YEAR = re.compile(r"(?<!\d)(19[5-9]\d|20[0-4]\d)(?!\d)")


def find_year(*values: Any) -> int | None:
    """The first plausible contest year (1950-2049) in the values, in order."""
    for value in values:
        if isinstance(value, int) and not isinstance(value, bool) and 1950 <= value <= 2049:
            return value
        match = YEAR.search(text(value)) if isinstance(value, str | int) else None
        if match:
            return int(match.group(1))
    return None


def unique_ids(problems: list[Problem]) -> list[Problem]:
    """Repeats of an id get `-2`, `-3`, ... so that every row stays (the duplicate filter drops repeats, with a reason)."""
    used: set[str] = set()
    out = []
    for p in problems:
        new, k = p.id, 1
        while new in used:
            k += 1
            new = f"{p.id}-{k}"
        used.add(new)
        out.append(p if new == p.id else p.model_copy(update={"id": new}))
    return out


def problem_from(
    statement: str, solution: str, source: str, competition: str, year: int | None, **metadata: Any
) -> Problem:
    return Problem(
        id=content_id(statement),
        statement=statement,
        solution=solution,
        source=source,
        metadata={"competition": competition, "year": year, **metadata},
    )


class Aops(TableSource):
    """The AI-MO/aops layout: forum problems with a chosen solution, alternative posts, tags and a path."""

    source: Literal["aops"] = "aops"
    hub: str | None = "AI-MO/aops"

    def load(self) -> list[Problem]:
        issues = Issues()
        problems = []
        for row in self.rows():
            statement, solution = text(row.values.get("problem")), text(row.values.get("solution"))
            if not statement:
                issues.add(row, "problem", "empty statement")
                continue
            found = row.values.get("metadata")
            meta: dict[str, Any] = found if isinstance(found, dict) else {}
            tags = [text(t) for t in row.values.get("tags") or []]
            path = text(meta.get("path"))
            contest = [t for t in tags if not t.startswith("origin:") and not re.fullmatch(r"\d{4} Contests", t)]
            folders = path.split("/")
            competition = contest[-1] if contest else (folders[-2] if len(folders) >= 2 else "")
            candidates = [text(c) for c in row.values.get("candidates") or [] if text(c)]
            problems.append(
                problem_from(
                    statement,
                    solution,
                    self.source,
                    competition,
                    find_year(*contest, *tags, path),
                    path=path,
                    tags=tags,
                    candidates=candidates,
                    **{k: meta[k] for k in ("answer_score", "boxed", "end_of_proof", "n_reply") if k in meta},
                )
            )
        issues.raise_if_any()
        return self.select(unique_ids(problems), self.where)


class Olympiads(TableSource):
    """The AI-MO/olympiads layout: official solutions of national and international competitions."""

    source: Literal["olympiads"] = "olympiads"
    hub: str | None = "AI-MO/olympiads"

    def load(self) -> list[Problem]:
        issues = Issues()
        problems = []
        for row in self.rows():
            statement = text(row.values.get("problem"))
            if not statement:
                issues.add(row, "problem", "empty statement")
                continue
            competition = text(row.pick("competition", "exam", "contest", "source")[1])
            found = row.values.get("metadata")
            meta: dict[str, Any] = found if isinstance(found, dict) else {}
            extra = {
                "category": text(row.pick("problem_type", "category")[1]),
                "answer": text(row.values.get("answer")),
                "label": text(row.pick("problem_label", "label")[1]),
            }
            problems.append(
                problem_from(
                    statement,
                    text(row.values.get("solution")),
                    self.source,
                    competition,
                    find_year(row.values.get("year"), competition, meta.get("resource_path")),
                    **{k: v for k, v in extra.items() if v},
                )
            )
        issues.raise_if_any()
        return self.select(unique_ids(problems), self.where)


class FineProofsRL(TableSource):
    """`lm-provers/FineProofs-RL`: the paper's RL prompts with rubrics and the base model's mean reward."""

    source: Literal["fineproofs-rl"] = "fineproofs-rl"
    hub: str | None = "lm-provers/FineProofs-RL"

    def load(self) -> list[Problem]:
        issues = Issues()
        problems = []
        for row in self.rows():
            statement = text(row.pick("problem", "task")[1])
            if not statement:
                issues.add(row, "problem", "empty statement")
                continue
            difficulty = row.pick("reward_mean", "difficulty")[1]
            competition = text(row.pick("competition", "exam")[1])
            problems.append(
                Problem(
                    id=text(row.values.get("id")) or content_id(statement),
                    statement=statement,
                    solution=text(row.pick("solution", "answer")[1]),
                    rubric=scheme_text(row.pick("rubrics", "schema", "rubric")[1]),
                    source=self.source,
                    metadata={
                        "competition": competition,
                        "year": find_year(row.values.get("year"), competition),
                        "origin": text(row.values.get("source")),
                        "difficulty": float(difficulty) if isinstance(difficulty, int | float) else None,
                    },
                )
            )
        issues.raise_if_any()
        return self.select(unique_ids(problems), self.where)


class FineProofsSFT(TableSource):
    """`lm-provers/FineProofs-SFT`: DeepSeek-Math-V2 proofs with reasoning; `examples()` are ready SFT rows."""

    source: Literal["fineproofs-sft"] = "fineproofs-sft"
    hub: str | None = "lm-provers/FineProofs-SFT"
    grade_column: str = "gemini-3-pro-grade"
    """The grade (0..7) each proof carries; stored on the example as a fraction of 7."""

    def parsed(self) -> list[tuple[Row, Problem]]:
        issues = Issues()
        out = []
        for row in self.rows():
            statement = text(row.values.get("problem"))
            if not statement:
                issues.add(row, "problem", "empty statement")
                continue
            competition = text(row.values.get("competition"))
            problem = problem_from(
                statement,
                text(row.values.get("proof")),
                self.source,
                competition,
                find_year(competition),
                category=text(row.values.get("category")),
                origin=text(row.values.get("source")),
            )
            out.append((row, problem))
        issues.raise_if_any()
        return out

    def load(self) -> list[Problem]:
        unique = {p.id: p for _, p in reversed(self.parsed())}  # the first row of each problem wins
        return self.select(list(reversed(unique.values())), self.where)

    def examples(self) -> list[SFTExample]:
        """Each row as an SFT example: its own `messages`, else user problem + `<think>reasoning</think>proof`."""
        out = []
        for row, problem in self.parsed():
            messages = row.values.get("messages")
            if not isinstance(messages, list) or not messages:
                reasoning = text(row.values.get("reasoning_content"))
                messages = [
                    {"role": "user", "content": problem.statement},
                    {"role": "assistant", "content": f"<think>{reasoning}</think>{problem.solution}"},
                ]
            grade = row.values.get(self.grade_column)
            out.append(
                SFTExample(
                    messages=[dict(m) for m in messages],
                    problem_id=problem.id,
                    source=text(row.values.get("source")) or self.source,
                    grade=grade / 7 if isinstance(grade, int | float) and not isinstance(grade, bool) else None,
                )
            )
        return out


class CorpusTable(Table):
    """Any local table with a column mapping (`columns:`), plus where the competition and year are."""

    source: Literal["corpus-table"] = "corpus-table"  # type: ignore[assignment]
    competition_column: str | None = None
    year_column: str | None = None
    """A column holding the year (an int, or text containing one); else the year is looked for in the competition."""

    def load(self) -> list[Problem]:
        columns = [c for c in (self.competition_column, self.year_column) if c]
        wider = self.model_copy(update={"metadata": list(dict.fromkeys([*self.metadata, *columns]))})
        out = []
        for p in Table.load(wider):
            competition = text(p.metadata.get(self.competition_column)) if self.competition_column else ""
            year = find_year(p.metadata.get(self.year_column) if self.year_column else None, competition)
            metadata = {k: v for k, v in p.metadata.items() if k in self.metadata}
            out.append(p.model_copy(update={"metadata": {**metadata, "competition": competition, "year": year}}))
        return unique_ids(out)


def corpus_tag(value: Any) -> str:
    return source_tag(value)


CorpusSource = Annotated[
    Annotated[ProblemFile, Tag("file")]
    | Annotated[Aops, Tag("aops")]
    | Annotated[Olympiads, Tag("olympiads")]
    | Annotated[FineProofsRL, Tag("fineproofs-rl")]
    | Annotated[FineProofsSFT, Tag("fineproofs-sft")]
    | Annotated[CorpusTable, Tag("corpus-table")]
    | Annotated[BuiltinSource, Tag("builtin")],
    Discriminator(corpus_tag),
]
"""One entry of a curate recipe's `sources:`, picked by `source`."""
