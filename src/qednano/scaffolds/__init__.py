"""Test-time scaffolds: short pure algorithms `async run(problem, models) -> proof text`.

A scaffold is a validated config with a `run` method; recipes pick one by `name` through
the `Scaffold` discriminated union. Scaffolds never touch files: resume comes from the call
cache and the run store, and every call they make is recorded on the Attempt by `LLM`.
"""

from __future__ import annotations

from typing import Annotated, Protocol

from pydantic import Field

from qednano.llm.client import Models
from qednano.records import Problem
from qednano.scaffolds.direct import Direct
from qednano.scaffolds.dsm import DSM
from qednano.scaffolds.nomos import Nomos
from qednano.scaffolds.reasoning_cache import ReasoningCache
from qednano.scaffolds.rsa import RSA
from qednano.scaffolds.self_check import SelfCheck


class ScaffoldRun(Protocol):
    @property
    def name(self) -> str: ...

    async def run(self, problem: Problem, models: Models) -> str: ...


Scaffold = Annotated[Direct | ReasoningCache | SelfCheck | Nomos | RSA | DSM, Field(discriminator="name")]
"""A recipe's `scaffold:` block; its `name` picks the class and the other keys are validated by it."""
