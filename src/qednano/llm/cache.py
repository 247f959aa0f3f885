"""The call cache: every finished model call, stored in SQLite, replayed on re-run.

A call is keyed by (scope, request, n-th repeat): the scope is the attempt id and scaffold
step, the request is the canonical JSON of everything sent (model, messages, sampling), and
the repeat index tells apart identical requests made in the same scope. A crashed run is
simply run again: finished calls replay from here at no cost, unfinished ones are sent.

A row holds the completion without its prompt: the key is a hash of the request, so a hit
is found only by the very request whose messages are the prompt, and the client puts them
back (`LLM.complete`). The prompts, most of a call's bytes (RSA's aggregation prompts repeat
the candidates they aggregate), are stored once, in the attempt's transcript; the row keeps
only `prompt_digest()` of its model and messages, so a harness can still tell which request
each row answers (`testing/chaos.py`). The keys are read once when the cache opens, so a
call that is not cached (every call of a fresh run) costs no query.

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


def prompt_digest(model: str | None, messages: Any) -> str:
    """sha256 over the model and the messages of a request (or of a Completion)."""
    blob = json.dumps([model, messages], sort_keys=True, ensure_ascii=False)
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
            if "prompt" not in {row[1] for row in self._db.execute("PRAGMA table_info(calls)")}:
                self._db.execute("ALTER TABLE calls ADD COLUMN prompt TEXT")  # caches from before prompts left out
            self._keys = {row[0] for row in self._db.execute("SELECT key FROM calls")}
        except sqlite3.Error as err:
            raise ConfigError(f"{self.path}: cannot open the call cache: {err}") from None

    def get(self, key: str) -> Completion | None:
        """The cached completion of `key`, with no messages (the caller's request holds them)."""
        if key not in self._keys:
            return None
        try:
            with self._lock:
                row = self._db.execute("SELECT completion FROM calls WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            data = json.loads(row[0])
            data["messages"] = []  # rows written before prompts were left out still carry theirs
            return Completion.model_validate(data)
        except (sqlite3.Error, ValidationError, json.JSONDecodeError) as err:
            raise ConfigError(f"{self.path}: cannot read the call cache: {err}") from None

    def put(self, key: str, scope: str, completion: Completion) -> None:
        """Store `completion` under `key`, without its messages (see the module docstring)."""
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO calls (key, scope, completion, prompt) VALUES (?, ?, ?, ?)",
                    (
                        key,
                        scope,
                        completion.model_dump_json(exclude={"messages"}),
                        prompt_digest(completion.model, completion.messages),
                    ),
                )
                self._keys.add(key)
        except sqlite3.Error as err:
            raise ConfigError(f"{self.path}: cannot write the call cache: {err}") from None

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
