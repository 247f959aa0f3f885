"""What a built-in prover checkpoint has learned: teacher-forced accuracy of its trace and proof words, by skill.

The diagnostic behind the README's "The built-in prover": on rows of the SFT set (the last
`--rows`, which an SFT run trains on too; pass a held-out export for unseen rows), the
checkpoint predicts every assistant token from the true prefix, and the share it gets right
is printed for each skill, told apart by the word before the target and by the line it is on:

- `copy fact`: the fact after `try`, two words back (`need X` / `try X ...`);
- `premise`: the fact after `need`, a premise of the rule tried above;
- `rule, theory` / `premise, theory`: the rule after `FACT by` and the first premise after
  `from` on a `try` line: what the theory says (learned in the weights; no statement lists it);
- `given check`: the first word of the line after a `try` line, `need` when a premise still
  has to be derived and `got` when all are given or known: the look-up of the premises in
  the problem's `given` line (and in the trace above);
- `proof fact`: the fact opening a proof line, which repeats the trace's `got` lines in order.

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/prover_probe.py runs/builtin-prover/sft runs/builtin-export/sft/train.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

SKILLS = ("copy fact", "premise", "rule, theory", "premise, theory", "given check", "proof fact")


def skill(words: list[str], i: int, line: str, previous: str) -> str | None:
    """The skill that predicting token i + 1 from tokens ..i exercises (None for syntax words)."""
    before = words[i]
    if before == "\n" and line == "proof":
        return "proof fact"
    if before == "\n" and previous == "try":
        return "given check"
    if before == "try":
        return "copy fact"
    if before == "need":
        return "premise"
    kind = {"by": "rule", "from": "premise"}.get(before)
    return f"{kind}, theory" if kind is not None and line == "try" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("rows", type=Path, help="an SFT set (JSONL of {messages: [...]})")
    parser.add_argument("--rows", dest="count", type=int, default=30)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    lines = args.rows.read_text(encoding="utf-8").splitlines()[-args.count :]
    right: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in lines:
        messages = json.loads(row)["messages"]
        ids = tok.apply_chat_template(messages, return_dict=False)
        start = len(tok.apply_chat_template(messages[:1], return_dict=False, add_generation_prompt=True))
        with torch.no_grad():
            guess = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
        words = tok.convert_ids_to_tokens(ids)
        line, previous = "", ""
        for i in range(start, len(ids) - 1):
            if words[i] == "</think>":
                line = "proof"
            elif words[i - 1] in ("\n", "<think>") and line != "proof":
                line, previous = words[i], line
            name = skill(words, i, line, line if words[i] == "\n" else previous)
            if name is not None:
                right[name][0] += guess[i] == ids[i + 1]
                right[name][1] += 1
    for name in SKILLS:
        if right[name][1]:
            print(f"{name:20s} {right[name][0] / right[name][1]:5.2f}  ({right[name][1]} targets)")


if __name__ == "__main__":
    main()
