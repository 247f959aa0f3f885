"""The call cache: every finished model call, stored in SQLite, replayed on re-run.

A call is keyed by (scope, request, n-th repeat): the scope is the attempt id and scaffold
step, the request is the canonical JSON of everything sent (model, messages, sampling), and
the repeat index tells apart identical requests made in the same scope. A crashed run is
simply run again: finished calls replay from here at no cost, unfinished ones are sent.

Writes are single-row transactions in WAL mode, so a SIGKILL loses at most the calls that
were in flight and never corrupts the database.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from qednano.config import ConfigError
from qednano.records import Completion


def request_digest(scope: str, request: dict[str, Any]) -> str:
    """sha256 over the scope and the canonical request JSON (computed once per call)."""
    blob = json.dumps([scope, request], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def call_key(digest: str, repeat: int) -> str:
    """The cache key of the `repeat`-th identical request in a scope."""
    return f"{digest}/{repeat}"


def request_key(scope: str, request: dict[str, Any], repeat: int) -> str:
    """The cache key of a call: (scope, request, n-th repeat)."""
    return call_key(request_digest(scope, request), repeat)


class CallCache:
    """A SQLite table of finished Completions, safe for concurrent use within one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, scope TEXT, completion TEXT)")
        except sqlite3.Error as err:
            raise ConfigError(f"{self.path}: cannot open the call cache: {err}") from None

    def get(self, key: str) -> Completion | None:
        try:
            with self._lock:
                row = self._db.execute("SELECT completion FROM calls WHERE key = ?", (key,)).fetchone()
            return None if row is None else Completion.model_validate_json(row[0])
        except (sqlite3.Error, ValidationError) as err:
            raise ConfigError(f"{self.path}: cannot read the call cache: {err}") from None

    def put(self, key: str, scope: str, completion: Completion) -> None:
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO calls (key, scope, completion) VALUES (?, ?, ?)",
                    (key, scope, completion.model_dump_json()),
                )
        except sqlite3.Error as err:
            raise ConfigError(f"{self.path}: cannot write the call cache: {err}") from None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
