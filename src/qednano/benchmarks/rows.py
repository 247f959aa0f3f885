"""Tabular rows from files, hub datasets and local copies of hub datasets: the input of the benchmark loaders.

`read_rows()` is the one entry: a local file (CSV, JSONL, JSON, parquet), a local copy of a
hub dataset (saved with `datasets`' `save_to_disk`, or a folder of data files in the hub's
layout), or a hub dataset id. Every row keeps where it came from (`file:line`, or
`dataset[split] row N`) so that loaders can name the exact place of a bad value. The
benchmark loaders in `sources.py` map these rows to `Problem`s.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from qednano.config import ConfigError, find_file

log = logging.getLogger(__name__)

FILE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
EXTRA = "(extra fields)"
"""Key under which a CSV record's fields beyond the header are kept."""


@dataclass(frozen=True)
class Row:
    """One row of a table and where it came from."""

    where: str
    """`path:line` for text files, `name[split] row N` for datasets."""
    values: dict[str, Any]

    def pick(self, *names: str) -> tuple[str | None, Any]:
        """The first of `names` that is a column of this row, and its value (None, None if none is)."""
        for name in names:
            if name in self.values:
                return name, self.values[name]
        return None, None


def read_rows(path: str | None, hub: str | None, split: str, revision: str | None = None) -> list[Row]:
    """Rows from a local path (file or dataset folder) or, when no path is given, a hub dataset."""
    if path:
        target = find_file(path)
        if target.is_dir():
            return read_dataset_dir(target, split)
        if target.is_file():
            return read_file(target)
        raise ConfigError(f"{target}: no such file or directory")
    if not hub:
        raise ConfigError("a problem source needs `path` (a local file or folder) or `hub` (a dataset id)")
    return read_hub(hub, split, revision)


def read_file(path: Path) -> list[Row]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path)
    if suffix == ".jsonl":
        return read_jsonl_rows(path)
    if suffix == ".json":
        return read_json_rows(path)
    if suffix == ".parquet":
        return read_parquet(path)
    raise ConfigError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(FILE_SUFFIXES)}")


def read_csv(path: Path) -> list[Row]:
    """CSV rows keyed by the header; `where` is the line on which the record starts."""
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise ConfigError(f"{path}: empty CSV file")
            start = reader.line_num + 1
            for record in reader:
                if any(cell.strip() for cell in record):
                    values: dict[str, Any] = dict(zip(header, record, strict=False))
                    for missing in header[len(record) :]:
                        values[missing] = None  # a short record: fields the parser never reached
                    if len(record) > len(header):
                        values[EXTRA] = record[len(header) :]  # more fields than the header names
                    rows.append(Row(f"{path}:{start}", values))
                start = reader.line_num + 1
    except csv.Error as err:
        raise ConfigError(f"{path}: invalid CSV: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    return rows


def read_jsonl_rows(path: Path) -> list[Row]:
    rows = []
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
            raise ConfigError(f"{path}:{number}: invalid JSON: {err}") from None
        if not isinstance(value, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
        rows.append(Row(f"{path}:{number}", value))
    return rows


def read_json_rows(path: Path) -> list[Row]:
    """A JSON file holding a list of objects (or `{"data": [...]}`)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:
        raise ConfigError(f"{path}: invalid JSON: {err}") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from None
    if isinstance(value, dict) and isinstance(value.get("data"), list):
        value = value["data"]
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{path}: expected a list of JSON objects")
    return [Row(f"{path}[{i}]", v) for i, v in enumerate(value)]


def read_parquet(path: Path) -> list[Row]:
    pq = require("pyarrow.parquet", "reading parquet files")
    table = pq.read_table(path)
    return [Row(f"{path} row {i}", v) for i, v in enumerate(table.to_pylist())]


def read_dataset_dir(path: Path, split: str) -> list[Row]:
    """A local copy of a hub dataset: a `save_to_disk` folder, or a folder of data files."""
    datasets = require("datasets", "reading a local copy of a hub dataset")
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ConfigError(f"{path}: no split {split!r}; splits are {sorted(loaded)}")
            loaded = loaded[split]
    else:
        try:
            loaded = datasets.load_dataset(str(path), split=split)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"{path}: cannot load split {split!r} as a dataset folder: {err}") from None
    return dataset_rows(loaded, f"{path}[{split}]")


OFFLINE_HINT = (
    "give a local copy instead: problems.path=FILE (a .csv, .jsonl, .json or .parquet file, or a dataset folder)"
)


def hub_offline() -> str | None:
    """Why the hub cannot be reached (`HF_HUB_OFFLINE`/`HF_DATASETS_OFFLINE` set, or no connection), else None.

    Checked with one short connection, so an offline run fails at once instead of retrying the hub.
    """
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{name} is set"
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # through a proxy a direct connection says nothing; the hub client finds out itself
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_S).close()
    except OSError as err:
        return f"cannot reach {endpoint.scheme}://{host}:{port} ({err.strerror or err})"
    return None


HUB_PROBE_S = 5.0
"""Seconds to wait for the hub's TCP connection before calling the run offline."""


def read_hub(name: str, split: str, revision: str | None) -> list[Row]:
    datasets = require("datasets", f"loading {name!r} from the hub")
    offline = hub_offline()
    if offline and "is set" not in offline:
        raise ConfigError(
            f"hub dataset {name!r}: the hub is out of reach: {offline}; {OFFLINE_HINT} "
            "(or HF_HUB_OFFLINE=1 to read a cached copy)"
        )
    log.info("loading %s (split %s, revision %s) from the hub", name, split, revision or "latest")
    try:
        loaded = datasets.load_dataset(name, split=split, revision=revision)
    except Exception as err:  # datasets raises many kinds; each becomes a ConfigError with the fix
        hint = f"; offline ({offline}) and not in the local cache: {OFFLINE_HINT}" if offline else ""
        raise ConfigError(f"hub dataset {name!r} (split {split!r}): cannot load: {err}{hint}") from None
    return dataset_rows(loaded, f"{name}[{split}]")


def dataset_rows(dataset: Any, name: str) -> list[Row]:
    return [Row(f"{name} row {i}", dict(row)) for i, row in enumerate(dataset)]


def require(module: str, purpose: str) -> Any:
    """Import an optional dependency, or fail with what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{purpose} needs the `{module.split('.')[0]}` package: pip install 'qednano[eval]'"
        ) from None
