"""The run directory: the pinned recipe, the call cache and append-only JSONL per stage.

```
runs/<name>/
  recipe.yaml           the resolved recipe; resuming with a different recipe is refused
  calls.sqlite          the call cache
  attempts.jsonl        one Attempt per (problem, sample)
  grades/<judge>.jsonl  one Grade per attempt and judge
  call_stats.jsonl      per pass and model: calls sent, replayed, retried, failed, faults (`pipeline.log_calls`)
  .lock                 flock of the one process writing the run (its pid); `pin()` takes it
```

Each record is one whole line, written and flushed with a single `write`. A crash can
leave at most a torn last line: reading ignores it, and the next append first moves it to
`<file>.torn` so the file stays valid. A bad line anywhere else is an error naming the
file, the line and the field. Paths given to the store cannot leave the run directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from qednano.config import ConfigError
from qednano.llm.cache import CallCache

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
"""Held (flock) by the one process writing the run directory; it holds that process's pid."""
STATS_FILE = "call_stats.jsonl"
"""Per pass and model, the `LLM`'s counters (`CallTally`): the report sums faults, retries and failed calls."""

T = TypeVar("T", bound=BaseModel)

TORN_WARNED: set[tuple[str, int]] = set()
"""(file, line) of the torn last lines already warned about in this process."""


def read_jsonl(path: Path, record: type[T], *, tolerate_torn_tail: bool = True) -> list[T]:
    """Every record in a JSONL file; a torn (unterminated, unparseable) last line is skipped."""
    if not path.exists():
        return []
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    lines = data.split(b"\n")
    out = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        last = number == len(lines)  # no newline after it: written by a writer that died
        try:
            out.append(record.model_validate_json(raw))
        except ValidationError as err:
            if last and tolerate_torn_tail:
                if (str(path), number) not in TORN_WARNED:  # once, though several stages read the file
                    TORN_WARNED.add((str(path), number))
                    log.warning("%s:%d: ignoring torn last line", path, number)
                continue
            raise ConfigError(jsonl_error(path, number, err)) from None
    return out


def jsonl_error(path: Path, number: int, err: ValidationError) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(line)"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{path}:{number}: {field}: {first['msg']}{more}"


class RunDir:
    """One run's directory; every stage reads and appends its records through it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._cache: CallCache | None = None
        self._lock: BinaryIO | None = None

    def lock(self) -> None:
        """Take the run directory's exclusive lock (`.lock`, flock), held until `close()` or the process ends.

        A second writer would append every record again; it is refused with the holder's pid.
        """
        if self._lock is not None:
            return
        self.create()
        path = self.file(LOCK_FILE)
        try:
            fh = open(path, "a+b")  # noqa: SIM115 - held open for the run's lifetime
        except OSError as err:
            raise ConfigError(f"{path}: cannot open the run's lock: {err.strerror or err}") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().decode(errors="replace").strip() or "?"
            fh.close()
            if holder == str(os.getpid()):
                raise ConfigError(
                    f"{self.path}: another RunDir of this process holds the run directory's lock; close() it first"
                ) from None
            raise ConfigError(
                f"{self.path}: another qednano process (pid {holder}) is writing this run directory; "
                "wait for it to finish, or use another run_dir"
            ) from None
        with contextlib.suppress(OSError):  # on a full disk the lock still holds; only the pid goes unsaid
            fh.truncate(0)
            fh.write(f"{os.getpid()}\n".encode())
            fh.flush()
        self._lock = fh

    def file(self, name: str) -> Path:
        """A path inside the run directory; names that would leave it are refused."""
        target = (self.path / name).resolve()
        if not target.is_relative_to(self.path.resolve()):
            raise ConfigError(f"{name!r} is outside the run directory {self.path}")
        return target

    def create(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"{self.path}: cannot create run directory: {err.strerror}") from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"{self.path}: run directory is not writable")

    def pin(self, recipe: dict[str, Any]) -> None:
        """Write the resolved recipe, or check that it matches the one this run was made with.

        Keys that change how a run goes but not what it computes (OPERATIONAL: concurrency,
        retries, timeouts, server URLs, the run directory itself) may differ on resume.
        """
        self.lock()
        pinned = self.file("recipe.yaml")
        text = yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)
        if not pinned.exists():
            atomic_write(pinned, text)
            return
        old = yaml.safe_load(pinned.read_text(encoding="utf-8"))
        if without_operational(old) != without_operational(recipe):
            old_text = yaml.safe_dump(without_operational(old), sort_keys=False, allow_unicode=True)
            new_text = yaml.safe_dump(without_operational(recipe), sort_keys=False, allow_unicode=True)
            raise ConfigError(
                f"{pinned}: this run was made with a different recipe; refusing to mix results.\n"
                f"Use a new run_dir, or restore the pinned recipe. Differences:\n{diff(old_text, new_text)}"
            )

    @property
    def cache(self) -> CallCache:
        if self._cache is None:
            self.create()
            self._cache = CallCache(self.file("calls.sqlite"))
        return self._cache

    def read(self, name: str, record: type[T]) -> list[T]:
        return read_jsonl(self.file(name), record)

    def append(self, name: str, record: BaseModel) -> None:
        """Append one record as one line, written unbuffered and fsynced.

        A write that fails part-way (a full disk) is cut back off, so the file keeps only
        whole lines, and the error names the file.
        """
        path = self.file(name)
        data = memoryview((record.model_dump_json() + "\n").encode())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab+", buffering=0) as fh:
                fh.seek(0, os.SEEK_END)
                if fh.tell():
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":
                        set_aside_torn_tail(path, fh)
                size = fh.seek(0, os.SEEK_END)
                try:
                    while data:
                        data = data[fh.write(data) or 0 :]
                    os.fsync(fh.fileno())
                except OSError:
                    os.ftruncate(fh.fileno(), size)
                    raise
        except OSError as err:
            raise ConfigError(f"{path}: cannot append a record: {err.strerror or err}") from None

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
        if self._lock is not None:
            self._lock.close()  # closing the file releases the flock
            self._lock = None


def set_aside_torn_tail(path: Path, fh: BinaryIO) -> None:
    """End an unterminated last line: keep it if it is whole JSON, else move it to `<file>.torn`."""
    fh.seek(0)
    data = fh.read()
    cut = data.rfind(b"\n") + 1
    try:
        json.loads(data[cut:])
    except ValueError:
        pass
    else:
        fh.write(b"\n")
        return
    with open(path.with_name(path.name + ".torn"), "ab") as torn:
        torn.write(data[cut:] + b"\n")
    fh.truncate(cut)
    fh.seek(0, os.SEEK_END)
    log.warning("%s: moved a torn last line to %s.torn", path, path.name)


def atomic_write(path: Path, text: str) -> None:
    """Write a whole file or nothing: write a temporary sibling, then rename over.

    On failure (a full disk, a read-only folder) the old file is left as it was.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write: {err.strerror or err}") from None


OPERATIONAL = frozenset(
    {
        "run_dir",
        "max_inflight",
        "concurrency",
        "max_retries",
        "backoff_s",
        "max_backoff_s",
        "timeout_s",
        "base_urls",
        "api_key_env",
        "max_batch",
        "device",
    }
)


def without_operational(data: Any) -> Any:
    """`data` with OPERATIONAL keys removed at every depth."""
    if isinstance(data, dict):
        return {k: without_operational(v) for k, v in data.items() if k not in OPERATIONAL}
    if isinstance(data, list):
        return [without_operational(v) for v in data]
    return data


def diff(old: str, new: str) -> str:
    import difflib

    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), "pinned", "given", lineterm="", n=0)
    return "\n".join(list(lines)[2:][:40])
