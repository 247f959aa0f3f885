"""Reading the SFT and RL sets for training: rows of `data/schema.py`, from files, `datasets` folders or the hub.

`qednano export` writes these rows; the published FineProofs sets load through a column
mapping (`data.columns`). A row that does not fit the schema is an error naming the file,
the line (or row) and the field, before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from qednano.benchmarks.rows import Row, read_rows
from qednano.config import ConfigError
from qednano.data.schema import RLProblem, SFTExample
from qednano.grading.rubrics import rubric_text
from qednano.train.recipes import TrainingData

T = TypeVar("T", bound=BaseModel)


def mapped(row: Row, columns: dict[str, str], schema: type[BaseModel]) -> dict[str, Any]:
    """The row's values under our field names: mapped columns first, then same-named ones."""
    out = {}
    for name in schema.model_fields:
        column = columns.get(name, name)
        if column in row.values:
            out[name] = row.values[column]
        elif name in columns:
            raise ConfigError(
                f"{row.where}: no such column {column!r} (mapped to {name!r}); columns: {sorted(row.values)}"
            )
    return out


def rl_values(values: dict[str, Any], row: Row) -> dict[str, Any]:
    """An RL row's values as RLProblem takes them: blanks dropped, the rubric cell through `rubric_text`."""
    values = {k: v for k, v in values.items() if v is not None}
    if "rubric" in values:
        values["rubric"] = rubric_text(values["rubric"], int(values.get("max_points", 7)))
    values.setdefault("problem_id", str(row.values.get("id", row.where)))
    return values


def read_set(
    data: TrainingData, schema: type[T], prepare: Callable[[dict[str, Any], Row], dict[str, Any]] | None = None
) -> list[T]:
    """Every row of the set as `schema`; a row that does not fit names its place and fields."""
    rows = read_rows(data.path, data.hub, data.split, data.revision)
    rows = rows[: data.limit] if data.limit else rows
    if not rows:
        raise ConfigError(f"{data.path or data.hub}: the training set is empty")
    out = []
    for row in rows:
        values = mapped(row, data.columns, schema)
        try:
            out.append(schema.model_validate(prepare(values, row) if prepare else values))
        except ValidationError as err:
            fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ConfigError(f"{row.where}: {fields}") from None
    return out


def read_sft_set(data: TrainingData) -> list[SFTExample]:
    """SFT conversations; each must end with an assistant turn."""
    examples = read_set(data, SFTExample)
    for i, ex in enumerate(examples):
        if not ex.messages or ex.messages[-1].get("role") != "assistant":
            raise ConfigError(
                f"{data.path or data.hub}: example {i} ({ex.problem_id}): the last message is not the assistant's"
            )
    return examples


def read_rl_set(data: TrainingData) -> list[RLProblem]:
    """RL problems; ids must be unique (rewards look problems up by id)."""
    problems = read_set(data, RLProblem, rl_values)
    seen: set[str] = set()
    for p in problems:
        if p.problem_id in seen:
            raise ConfigError(f"{data.path or data.hub}: problem_id {p.problem_id!r} appears twice")
        seen.add(p.problem_id)
    return problems
