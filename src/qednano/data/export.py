"""`qednano export RECIPE`: the SFT set and the RL set, the last stage of the DATA flow.

- **SFT** (QED-Nano section 4.3, appendix C): the teacher's attempts (`qednano generate` runs,
  graded by `qednano grade`) that are structurally valid - the call that wrote the proof
  closed its reasoning and was not cut off, and the proof matches `proof_pattern` when one is
  set - optionally only those graded at least `min_grade`, optionally one per problem (the
  best graded; the paper's unique-problem ablation won), as conversations: the messages the
  teacher was sent, then `<think>{reasoning}</think>{proof}`. `calls` adds an attempt's other
  calls by step name (a tournament's matches) as conversations of their own. Token lengths are counted with
  `tokenizer` (a local tokenizer folder) and summarised in the report.
- **RL** (sections 3 and 4.1): the curated problems with their rubrics, the difficulty measured
  from the base model's graded attempts (`difficulty.py`), selected by the paper's rule.

Both are written as `datasets` folders (`save_to_disk`), parquet and JSONL under `out_dir/sft`
and `out_dir/rl`, with exactly the columns of `data/schema.py`, and pushed to the hub when
`push.enabled` (the token from the environment variable `push.token_env`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from qednano.config import ConfigError, Strict
from qednano.data.difficulty import Selection, annotate, difficulty, histogram, histogram_markdown, select
from qednano.data.schema import RLProblem, SFTExample
from qednano.data.sources import CorpusSource, FineProofsSFT
from qednano.records import Attempt, Completion, Grade, Problem
from qednano.store import RunDir, atomic_write, read_jsonl

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
Format = Literal["disk", "parquet", "jsonl"]
ALL_FORMATS: tuple[Format, ...] = ("disk", "parquet", "jsonl")


class SFTExport(Strict):
    """Which teacher attempts become SFT examples."""

    runs: list[str] = Field(default_factory=list)
    """Teacher run directories (`attempts.jsonl`, `grades/<judge>.jsonl`)."""
    published: FineProofsSFT | None = None
    """A published SFT set (`source: fineproofs-sft`) whose rows join the teacher's: the paper's data without curating."""
    judge: str | None = None
    """The grades file to read (`grades/<judge>.jsonl`); None: the run's only one, or ungraded when it has none."""
    require_closed_reasoning: bool = True
    """Keep only attempts whose proof call closed its reasoning and was not cut off."""
    proof_pattern: str | None = None
    """A regular expression the proof must match (e.g. `(?im)^#+ *(proof|solution)`); None: any non-empty proof."""
    min_grade: float | None = Field(default=None, ge=0, le=1)
    """Keep only attempts graded at least this (fraction of full marks); ungraded ones are then dropped."""
    one_per_problem: bool = False
    """Keep the best-graded attempt of each problem (ties: the lowest sample)."""
    tokenizer: str | None = None
    """A local tokenizer folder to count tokens with (its chat template); None: not counted."""
    max_tokens: int | None = Field(default=None, ge=1)
    """Drop examples longer than this (needs `tokenizer`; the paper's data stops at 45k)."""
    calls: list[str] = Field(default_factory=list)
    """Step-name prefixes (e.g. `tournament/`) of further calls that become examples beside each attempt's
    proof, each with the attempt's grade, when the call was not cut off: a teacher's match verdicts teach
    the prover to referee RSA's knockout. (`one_per_problem` keeps the proof alone.)"""


class RLExport(Strict):
    """How the RL set's difficulty is measured and its prompts selected."""

    runs: list[str] = Field(default_factory=list)
    """Base-model run directories: `samples: n` attempts per problem, graded. None given: the difficulty the
    problems already carry (`metadata.difficulty`, e.g. FineProofs-RL's `reward_mean`) is used."""
    judge: str | None = None
    selection: Selection = Field(default_factory=Selection)
    require_rubric: bool = True
    """Drop problems without a rubric (the RL judge grades against it)."""


class HubPush(Strict):
    enabled: bool = False
    sft_repo: str | None = None
    rl_repo: str | None = None
    private: bool = True
    token_env: str = "HF_TOKEN"
    """The environment variable holding the hub token (never the token itself)."""


class ExportRecipe(Strict):
    """`qednano export RECIPE`."""

    out_dir: str
    problems: CorpusSource | list[CorpusSource] | None = None
    """The curated problems with rubrics (the rubrics run's `problems.jsonl`), or a published set
    (`source: fineproofs-rl`), or a list of such sources (their union: an id given twice must be
    the same problem); needed unless the SFT set comes from `sft.published` alone."""
    sft: SFTExport | None = None
    rl: RLExport | None = None
    formats: list[Format] = Field(default_factory=lambda: list(ALL_FORMATS))
    push: HubPush = Field(default_factory=HubPush)


@dataclass
class ExportOutcome:
    sft: list[SFTExample] = field(default_factory=list)
    rl: list[RLProblem] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    """Reason -> count, over both sets."""
    files: list[Path] = field(default_factory=list)
    report: str = ""


def grades_of(run: RunDir, judge: str | None) -> list[Grade]:
    """The grades of a run from `grades/<judge>.jsonl`, or its only grades file when `judge` is None."""
    folder = run.file("grades")
    if judge is not None:
        path = folder / f"{judge}.jsonl"
        if not path.is_file():
            known = sorted(p.stem for p in folder.glob("*.jsonl"))
            raise ConfigError(f"{path}: no such grades file; the run has {known}")
        return read_jsonl(path, Grade)
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if len(files) > 1:
        raise ConfigError(f"{folder}: several grades files {[p.stem for p in files]}; set `judge:` to one")
    return read_jsonl(files[0], Grade) if files else []


def proof_call(attempt: Attempt) -> Completion | None:
    """The call whose text is the proof (the latest such), as in `Attempt.truncated`."""
    return next((c for c in reversed(attempt.transcript) if c.text == attempt.proof), None)


def structural_issue(attempt: Attempt, config: SFTExport) -> str | None:
    if not attempt.proof.strip():
        return "empty proof"
    call = proof_call(attempt)
    if config.require_closed_reasoning and (call is None or call.truncated):
        return "reasoning not closed or output cut off"
    if config.proof_pattern and not re.search(config.proof_pattern, attempt.proof):
        return "no proof section"
    return None


def conversation(attempt: Attempt, problem: Problem) -> list[dict[str, Any]]:
    call = proof_call(attempt)
    asked = [dict(m) for m in call.messages] if call is not None and call.messages else []
    asked = asked or [{"role": "user", "content": problem.statement}]
    reasoning = call.reasoning if call is not None else ""
    return [*asked, answered(reasoning, attempt.proof)]


def answered(reasoning: str, text: str) -> dict[str, Any]:
    """The assistant turn of an SFT conversation: `<think>{reasoning}</think>{text}`."""
    return {"role": "assistant", "content": f"<think>{reasoning}</think>{text}"}


def call_conversations(attempt: Attempt, prefixes: list[str]) -> list[list[dict[str, Any]]]:
    """The attempt's calls whose step starts with one of `prefixes` and that were not cut off, as conversations."""
    return [
        [*(dict(m) for m in call.messages), answered(call.reasoning, call.text)]
        for call in attempt.transcript
        if call.step.startswith(tuple(prefixes)) and call.messages and call.text.strip() and not call.truncated
    ]


def token_counter(path: str | None) -> Any:
    if path is None:
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)

    def count(messages: list[dict[str, Any]]) -> int:
        encoded: Any = tok.apply_chat_template(messages, tokenize=True, return_dict=True)
        return len(encoded["input_ids"])

    return count


def tally(dropped: dict[str, int], reason: str, n: int = 1) -> None:
    if n:
        dropped[reason] = dropped.get(reason, 0) + n


def teacher_examples(config: SFTExport, problems: dict[str, Problem], dropped: dict[str, int]) -> list[SFTExample]:
    """The structurally valid attempts of the teacher runs as (not yet counted) examples, in run order."""
    out = []
    for run_dir in config.runs:
        run = RunDir(run_dir)
        scores = {g.attempt_id: g.score for g in grades_of(run, config.judge)}
        for attempt in run.read("attempts.jsonl", Attempt):
            problem = problems.get(attempt.problem_id)
            issue = "problem not in the problem set" if problem is None else structural_issue(attempt, config)
            if issue or problem is None:
                tally(dropped, f"sft: {issue}")
                continue
            grade = scores.get(attempt.id)
            for messages in [conversation(attempt, problem), *call_conversations(attempt, config.calls)]:
                out.append(SFTExample(messages=messages, problem_id=problem.id, source=problem.source, grade=grade))
    return out


def sft_examples(config: SFTExport, problems: dict[str, Problem], dropped: dict[str, int]) -> list[SFTExample]:
    """Teacher attempts (and the published set's rows), filtered by grade, one per problem, counted."""
    count = token_counter(config.tokenizer)
    if config.max_tokens is not None and count is None:
        raise ConfigError("sft.max_tokens needs sft.tokenizer to count tokens")
    candidates = teacher_examples(config, problems, dropped)
    candidates += config.published.examples() if config.published is not None else []
    if config.min_grade is not None:
        floor = config.min_grade
        for e in candidates:
            if e.grade is None or e.grade < floor:
                tally(dropped, "sft: ungraded" if e.grade is None else "sft: under min_grade")
        candidates = [e for e in candidates if e.grade is not None and e.grade >= floor]
    if config.one_per_problem:
        best: dict[str, SFTExample] = {}
        for e in candidates:  # the first of the best grades wins (ungraded counts lowest)
            old = best.get(e.problem_id)
            if old is None or (e.grade if e.grade is not None else -1) > (old.grade if old.grade is not None else -1):
                best[e.problem_id] = e
        tally(dropped, "sft: not the best of its problem", len(candidates) - len(best))
        candidates = list(best.values())
    out = []
    for e in candidates:
        tokens = count(e.messages) if count is not None else None
        if config.max_tokens is not None and tokens is not None and tokens > config.max_tokens:
            tally(dropped, "sft: over max_tokens")
            continue
        out.append(e.model_copy(update={"num_tokens": tokens}))
    return out


def rl_problems(
    config: RLExport, problems: list[Problem], dropped: dict[str, int]
) -> tuple[list[RLProblem], list[Problem], str]:
    """(the RL set, every problem with its measured difficulty, the histogram table)."""
    annotated = problems
    if config.runs:
        grades = [g for run in config.runs for g in grades_of(RunDir(run), config.judge)]
        measured = difficulty(problems, grades)
        annotated = annotate(problems, {k: v for k, v in measured.items() if v.graded or v.ungraded})
    if config.require_rubric:
        tally(dropped, "rl: no rubric", sum(not p.rubric.strip() for p in annotated))
        annotated = [p for p in annotated if p.rubric.strip()]
    kept, rejected = select(annotated, config.selection)
    for _, reason in rejected:
        key = "rl: " + reason.split(" (")[0]
        dropped[key] = dropped.get(key, 0) + 1
    before = histogram(p.metadata.get("difficulty") for p in annotated)
    after = histogram(p.metadata.get("difficulty") for p in kept)
    return [RLProblem.from_problem(p) for p in kept], annotated, histogram_markdown(before, after)


def write_set(rows: list[BaseModel], folder: Path, formats: list[Format]) -> list[Path]:
    """The rows as JSONL, parquet and a `save_to_disk` folder (an empty set is written as JSONL only)."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [r.model_dump(mode="json") for r in rows]
    paths = []
    if "jsonl" in formats:
        atomic_write(folder / "train.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        paths.append(folder / "train.jsonl")
    if not records:
        log.warning("%s: the set is empty; only JSONL is written", folder)
        return paths
    if "parquet" in formats:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), folder / "train.parquet")
        paths.append(folder / "train.parquet")
    if "disk" in formats:
        dataset(records).save_to_disk(str(folder / "dataset"))
        paths.append(folder / "dataset")
    return paths


def dataset(records: list[dict[str, Any]]) -> Any:
    import datasets

    return datasets.Dataset.from_list(records)


def read_set(path: str | Path, row: type[T]) -> list[T]:
    """Rows of an exported set (a JSONL file, a parquet file or a `save_to_disk` folder), validated."""
    from qednano.benchmarks.rows import read_rows

    out = []
    for r in read_rows(str(path), None, "train"):
        try:
            out.append(row.model_validate(r.values))
        except ValidationError as err:
            first = err.errors()[0]
            raise ConfigError(f"{r.where}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    return out


def push(rows: list[BaseModel], repo: str, config: HubPush) -> None:
    """Push a set to the hub as a dataset (needs network and a token in `config.token_env`)."""
    token = os.environ.get(config.token_env)
    if not token:
        raise ConfigError(f"push to {repo}: set the hub token in the environment variable {config.token_env}")
    dataset([r.model_dump(mode="json") for r in rows]).push_to_hub(repo, private=config.private, token=token)


def token_stats(examples: list[SFTExample]) -> str:
    counts = sorted(e.num_tokens for e in examples if e.num_tokens is not None)
    if not counts:
        return "tokens not counted (set sft.tokenizer)"
    p95 = counts[min(len(counts) - 1, int(0.95 * len(counts)))]
    return (
        f"tokens per example: mean {statistics.mean(counts):.0f}, median {statistics.median(counts):.0f}, "
        f"p95 {p95}, max {counts[-1]}, total {sum(counts)}"
    )


def union(sources: CorpusSource | list[CorpusSource] | None) -> list[Problem]:
    """The problems of one source or of several, in order, each id once (a repeat must be the same problem)."""
    if sources is None:
        return []
    seen: dict[str, Problem] = {}
    for source in sources if isinstance(sources, list) else [sources]:
        for p in source.load():
            first = seen.setdefault(p.id, p)
            if first.statement != p.statement:
                raise ConfigError(f"problems: id {p.id!r} is given twice with different statements")
    return list(seen.values())


def export(recipe: ExportRecipe) -> ExportOutcome:
    """Build, write (and push) the sets the recipe asks for; the report goes to `out_dir/report.md`."""
    if recipe.sft is None and recipe.rl is None:
        raise ConfigError("the export recipe has neither `sft:` nor `rl:`")
    needs_problems = recipe.rl is not None or (recipe.sft is not None and recipe.sft.runs)
    if needs_problems and recipe.problems is None:
        raise ConfigError("the export recipe needs `problems:` (the curated problems with rubrics)")
    if recipe.sft is not None and not recipe.sft.runs and recipe.sft.published is None:
        raise ConfigError("sft: give teacher `runs:` or a `published:` set")
    problems = union(recipe.problems)
    out_dir = Path(recipe.out_dir)
    outcome = ExportOutcome()
    lines = ["# Export report", ""]
    if recipe.sft is not None:
        outcome.sft = sft_examples(recipe.sft, {p.id: p for p in problems}, outcome.dropped)
        outcome.files += write_set(list(outcome.sft), out_dir / "sft", recipe.formats)
        unique = len({e.problem_id for e in outcome.sft})
        lines += [
            "## SFT set",
            "",
            f"{len(outcome.sft)} examples over {unique} problems; {token_stats(outcome.sft)}",
            "",
        ]
    if recipe.rl is not None:
        outcome.rl, measured, table = rl_problems(recipe.rl, problems, outcome.dropped)
        outcome.files += write_set(list(outcome.rl), out_dir / "rl", recipe.formats)
        # every problem with its measured difficulty, selected or not (beside the set, not in its folder)
        atomic_write(out_dir / "difficulty.jsonl", "".join(p.model_dump_json() + "\n" for p in measured))
        outcome.files.append(out_dir / "difficulty.jsonl")
        lines += ["## RL set", "", f"{len(outcome.rl)} problems of {len(problems)}.", "", table, ""]
    lines += ["## Dropped", "", *[f"- {k}: {v}" for k, v in sorted(outcome.dropped.items())], ""]
    outcome.report = "\n".join(lines)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "report.md", outcome.report)
    outcome.files.append(out_dir / "report.md")
    if recipe.push.enabled:
        for rows, repo in ((outcome.sft, recipe.push.sft_repo), (outcome.rl, recipe.push.rl_repo)):
            if repo and rows:
                push(list(rows), repo, recipe.push)
    return outcome
