"""Prompt templates (`*.md` beside this file) and `render()`.

Placeholders are written `{{name}}`. Rendering substitutes only those, in one pass, so
LaTeX braces in templates or in values (`\\frac{a}{b}`, `\\boxed{}`) pass through untouched
and a value that itself contains `{{...}}` is never expanded. A placeholder with no value
raises; so does a value given for a placeholder the template lacks (a typo caught early).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}<|im_end|>{% endgeneration %}"
    "{% else %}{{ m['content'] }}<|im_end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The chat template of the models built here (ChatML); the `generation` markers let TRL's assistant-only loss find the assistant tokens."""
NO_SUMMARY = "(none: this is the first attempt)"
"""The summary a Reasoning Cache solve prompt carries on its first turn (evaluation; RC training's `rc.no_summary`)."""
CANDIDATE = "---- Candidate {} ----"
"""The line above each candidate in an aggregation prompt (RSA's `{{candidates}}`)."""
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class PromptError(ValueError):
    """A template that cannot be rendered with the given fields."""


@cache
def template(name: str) -> str:
    """A bundled template by name (`proof`), or a template file by path (`my/prompt.md`)."""
    if name.endswith((".md", ".txt")) or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise PromptError(f"prompt file {name} not found")
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise PromptError(f"prompt file {name}: cannot read: {err}") from None
    file = resources.files(__package__) / f"{name}.md"
    if not file.is_file():
        raise PromptError(f"no bundled prompt named {name!r}")
    return file.read_text(encoding="utf-8")


def fields(text: str) -> set[str]:
    """The placeholder names a template uses."""
    return set(PLACEHOLDER.findall(text))


def render(text: str, **values: object) -> str:
    """Fill `{{name}}` placeholders; every placeholder needs a value and every value a placeholder."""
    needed = fields(text)
    missing = needed - values.keys()
    if missing:
        raise PromptError(f"prompt needs {sorted(missing)}, got {sorted(values)}")
    unused = values.keys() - needed
    if unused:
        raise PromptError(f"prompt has no placeholder for {sorted(unused)}")
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


def candidates_block(texts: list[str], empty: str) -> str:
    """The candidates of an aggregation prompt, each under its `CANDIDATE` line (`empty` for one with no text)."""
    return "\n\n".join(f"{CANDIDATE.format(i)}\n\n{t or empty}" for i, t in enumerate(texts, start=1))
