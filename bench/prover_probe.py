"""What a built-in prover checkpoint has learned: teacher-forced accuracy of the word after each trace and proof word.

The diagnostic behind the README's "The built-in prover": on rows of the SFT set (the last
`--rows`, which an SFT run with the length monitor off trains on too; pass a held-out export
for unseen rows), the checkpoint predicts every assistant token from the true prefix, and
the share it gets right is printed by the word before it. The words separate the skills:

- after `try`: copy the fact two words back (`need X` / `try X ...`);
- after `need`: a premise of the rule tried on the line above;
- after `from`: the rule's body, copied from its line;
- after `by`: the rule a fact is concluded by, a look-up in the statement (what a proof needs).

Run: OMP_NUM_THREADS=1 .venv/bin/python bench/prover_probe.py runs/builtin-prover/sft runs/builtin-export/sft/train.jsonl
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

WORDS = ("try", "need", "from", "by", "got", "fail", "\n")


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
    for line in lines:
        messages = json.loads(line)["messages"]
        ids = tok.apply_chat_template(messages, return_dict=False)
        start = len(tok.apply_chat_template(messages[:1], return_dict=False, add_generation_prompt=True))
        with torch.no_grad():
            guess = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
        words = tok.convert_ids_to_tokens(ids)
        for i in range(start, len(ids) - 1):
            if words[i] in WORDS:
                right[words[i]][0] += guess[i] == ids[i + 1]
                right[words[i]][1] += 1
    figures = {w: right[w][0] / right[w][1] for w in WORDS if right[w][1]}
    print(" ".join(f"after_{'newline' if w == chr(10) else w}={v:.2f}" for w, v in figures.items()))


if __name__ == "__main__":
    main()
