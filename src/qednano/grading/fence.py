"""Hardening the judge against reward hacking: the candidate text is fenced as data.

Used by every judge (`judge.py`, `answers.py`) before a proof or an extracted answer is put
in a judge prompt, in benchmark grading and in the RL reward alike. A policy trained on the
judge's score has every reason to write text aimed at the judge, so:

1. **The fence cannot be closed from inside.** The proof sits between two marker lines that
   carry a code derived from a hash of the judge name, the problem id and the proof itself
   (`nonce()`): a proof cannot contain the hash of itself, yet the code is the same on a
   re-run, so the call cache still replays the call. Any marker-like line in the proof is
   neutralised anyway.
2. **Verdict-like tags are neutralised.** `<points>`, `<score>`, `<verdict>` and the other
   tags judges answer in lose their angle brackets (`<points>` -> `‹points›`), so neither the
   judge nor the parser can read them as a verdict, even if the judge echoes the proof.
3. **Instructions to the grader are removed.** Sentences that address the grader or ask for
   marks ("ignore previous instructions", "award full marks", "note to the grader"), and
   text that poses as a system, developer or grader note, in plain prose, in brackets
   (`[SYSTEM NOTE: ...]`), in comments (`<!-- grader: ... -->`, `% judge: ...`) or in
   markup (`<system>...</system>`, `**Grader's note:**`), are replaced by a visible
   placeholder; role tags lose their angle brackets like verdict tags.
4. **Chat-template control tokens are neutralised** for every engine: `<|im_start|>`,
   `<|im_end|>`, `<|endoftext|>` and any other `<|...|>` token (Qwen, ChatML, Llama 3,
   gpt-oss harmony, DeepSeek's full-width `<｜...｜>`), `[INST]`, `<<SYS>>`, `<s>`, `</s>`,
   `<start_of_turn>`, `<think>` and the like, plus any `special_tokens` the caller names (a
   local judge's tokenizer). Their brackets become look-alikes (`<|im_start|>` ->
   `‹|im_start|›`), so no tokenizer reads them as role or end-of-text tokens.

Any of these marks the Grade with the flag `prompt_injection`; what was found is kept in
`Grade.metadata["injection"]` so a report can count and show it.

The scaffolds' own checks use the same fence wherever a model judges candidate text and a
verdict is parsed from its reply (`tournament.py`, nomos self-scores and consolidation, DSM
verification, self_check verification and classification): the candidate is fenced in the
prompt, and the fenced region is cut from the reply (`verdicts.cut_fenced`) before the
score or verdict is read, so only the model's own words count.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from qednano.grading.verdicts import cut_fenced
from qednano.llm.types import ModelConfig
from qednano.prompts import render, template
from qednano.records import content_id

INJECTION_FLAG = "prompt_injection"
REMOVED = "[text addressed to the grader removed]"

_TAGS = (
    "points|score|verdict|grade|grading|assessment|errors|summary|overall|step|detailed_verification"
    "|evaluation|judgement|judgment|thinking|final_score|result|answer|keep"
)
_TAG = re.compile(rf"<\s*(/?)\s*({_TAGS})\b([^<>]{{0,80}})>", re.IGNORECASE)
_MARKER = re.compile(r"<<<[^\n]{0,80}?>>>")
_CONTROL = re.compile(
    r"<[|｜][^<>\n]{0,60}?[|｜]>"  # <|im_start|>, <|eot_id|>, <|channel|>, <｜begin▁of▁sentence｜>
    r"|\[/?(?:INST|SYS|SYSTEM_PROMPT|AVAILABLE_TOOLS|TOOL_CALLS|TOOL_RESULTS)\]"
    r"|<</?SYS>>"
    r"|</?(?:s|bos|eos|pad|unk|start_of_turn|end_of_turn|think|thinking|im_start|im_end|endoftext)>",
    re.IGNORECASE,
)
_ROLE_TAG = re.compile(
    r"<\s*(/?)\s*(system|developer|user|assistant|instructions?|grader(?:_note)?|judge|admin|evaluator|im_start|im_end)"
    r"\b([^<>]{0,80})>",
    re.IGNORECASE,
)
_ROLE_BLOCK = re.compile(
    r"<\s*(system|developer|instructions?|grader(?:_note)?|judge|admin|evaluator)\b[^<>]{0,80}>.{0,2000}?<\s*/\s*\1\s*>",
    re.IGNORECASE | re.DOTALL,
)
_COMMENT = re.compile(r"<!--|-->")
_NOTE_WORDS = (
    r"(?:notes?|messages?|instructions?|override|prompt|comments?|remarks?|notice|update|directives?|guidance)"
)
_ROLES = (
    r"(?:grader|judge|evaluator|developer|admin(?:istrator)?|moderator|reviewer|examiner|assessor|grading)s?(?:'s|s')?"
)
_WEAK_ROLES = r"(?:system|assistant|user|verifier|marker|official|openai|anthropic|google)(?:'s)?"
Screened = tuple[re.Pattern[str], tuple[tuple[str, ...], ...]]
"""A pattern and the words it cannot match without: one word of each group, in the folded text."""


def _screened(pattern: str, flags: int, *needs: str) -> Screened:
    """`pattern` compiled, with its needed words (`needs`: one `a|b|c` group per word it must contain).

    Most proofs contain none of a pattern's needed words, and a substring test is a hundred
    times cheaper than a case-insensitive scan for a `\b(?:...)` alternation, so `neutralise`
    runs a pattern only where every group has a word in the text.
    """
    return re.compile(pattern, flags), tuple(tuple(group.split("|")) for group in needs)


_FOLD = str.maketrans({"İ": "i", "ı": "i", "ſ": "s"})
"""The only characters that `re.IGNORECASE` matches to an ASCII letter and `str.lower` does not map to it."""


def _folded(text: str) -> str:
    """`text` lower-cased so that a needed word is in it wherever a case-insensitive pattern could match."""
    return text.translate(_FOLD).lower()


def _screen(patterns: list[Screened], folded: str) -> list[re.Pattern[str]]:
    """The patterns whose needed words are all in `folded` (the others cannot match)."""
    return [pattern for pattern, needs in patterns if all(any(w in folded for w in group) for group in needs)]


_ROLE_WORDS = "grader|judge|evaluator|developer|admin|moderator|reviewer|examiner|assessor|grading"
_GRADER_WORDS = "grader|judge|evaluator|marker|reviewer|verifier|assessor|examiner"
_NOTES = [
    _screened(p, re.IGNORECASE | re.MULTILINE, *needs)
    for p, *needs in (
        # a role label opening a line or a bracket, comment or markup: "Grader:", "[Judge note]", "<!-- evaluator -"
        (rf"(?:^|(?<=[\[({{<#*/%|>\-]))[ \t*_]*{_ROLES}[ \t]*(?:{_NOTE_WORDS})?[ \t*_]*[:\])>\-–—]", _ROLE_WORDS),
        # system/assistant/official ... only with a note word: "System note:", "[official grading message]"
        (
            rf"\b{_WEAK_ROLES}[ \t]+(?:grading[ \t]+|grader[ \t]+)?{_NOTE_WORDS}\b",
            "system|assistant|user|verifier|marker|official|openai|anthropic|google",
            "note|message|instruction|override|prompt|comment|remark|notice|update|directive|guidance",
        ),
        # prose that speaks for the graders or the organisers
        (
            r"\b(?:already\s+|been\s+|was\s+|were\s+)(?:verified|checked|approved|graded|validated|certified|confirmed"
            r"|reviewed)\s+(?:as\s+correct\s+)?by\s+(?:the\s+|an?\s+|our\s+)?(?:official\s+|human\s+|expert\s+|previous\s+)?"
            r"(?:grader|judge|committee|organi[sz]er|reviewer|expert|evaluator|jury|markers?)",
            "verified|checked|approved|graded|validated|certified|confirmed|reviewed",
            "grader|judge|committee|organiser|organizer|reviewer|expert|evaluator|jury|marker",
        ),
        (
            r"\bthe\s+(?:correct|expected|intended|official|final|right)\s+(?:score|grade|mark|number\s+of\s+points)\s+"
            r"(?:is|should\s+be|=|:)",
            "correct|expected|intended|official|final|right",
            "score|grade|mark|number",
        ),
        (r"\b(?:score|grade|mark)\s*[:=]\s*\d+\s*(?:/|out\s+of)\s*\d+", "score|grade|mark", ":|="),
        (r"\bdo\s+not\s+(?:penali[sz]e|deduct|subtract|take\s+off)\b", "penali|deduct|subtract|take"),
        (
            r"\byou\s+are\s+(?:now\s+)?(?:a|an|the)\s+(?:lenient|generous|kind|new|different|helpful)\b",
            "you",
            "lenient|generous|kind|new|different|helpful",
        ),
        (r"\b(?:new|updated|revised|additional)\s+(?:grading\s+)?instructions\b", "instructions"),
        (
            r"\btreat\s+(?:this|the\s+following|it)\s+as\s+(?:the\s+)?(?:reference|official|model)\s+(?:solution|answer|proof)",
            "treat",
        ),
    )
]
_GRADER = r"(?:grader|judge|evaluator|marker|reviewer|verifier|assessor|examiner)s?"
_INSTRUCTIONS = [
    _screened(p, re.IGNORECASE, *needs)
    for p, *needs in (
        (
            r"\b(?:ignore|disregard|forget|override)\s+(?:all\s+|any\s+)?(?:of\s+)?(?:the\s+|your\s+)?"
            r"(?:previous|prior|above|earlier|preceding|former|system|grading|original)?\s*"
            r"(?:instructions?|rules|guidelines|directions|prompt|rubric|marking\s+scheme)",
            "ignore|disregard|forget|override",
        ),
        (
            rf"\b(?:note|message|instructions?|reminder|hint)s?\s+(?:to|for)\s+(?:the\s+|any\s+)?(?:ai\s+)?{_GRADER}",
            _GRADER_WORDS,
        ),
        (rf"\b(?:dear|attention|hello|hi)\s*,?\s+(?:the\s+)?(?:ai\s+)?{_GRADER}", _GRADER_WORDS),
        (
            r"\b(?:award|give|assign|grant)\s+(?:(?:this|the|my)\s+(?:proof|solution|answer|response|attempt|work)\s+|it\s+|me\s+)?"
            r"(?:with\s+|a\s+|an\s+|the\s+)?(?:full|maximum|max|perfect|complete|top|highest)\s+(?:marks?|points?|scores?|credit|grade)",
            "award|give|assign|grant",
        ),
        (
            r"\b(?:award|give|assign|grant|score|rate|grade)\s+(?:(?:this|the|my)\s+(?:proof|solution|answer|response|attempt|work)|it|me)"
            r"\s+(?:a\s+)?(?:7|seven)\b",
            "award|give|assign|grant|score|rate|grade",
            "7|seven",
        ),
        (r"\bfull\s+(?:marks|credit)\b", "full", "marks|credit"),
        (
            r"\byou\s+(?:must|should|shall|are\s+(?:required|instructed)\s+to|will|have\s+to)\s+"
            r"(?:award|give|assign|output|grade|score|rate|mark|accept|return)",
            "you",
            "award|give|assign|output|grade|score|rate|mark|accept|return",
        ),
        (
            r"\b(?:this|the|my)\s+(?:proof|solution|answer|response)\s+(?:deserves|should\s+(?:get|receive|be\s+given)|"
            r"must\s+(?:get|receive|be\s+given))\s+(?:full|7|seven|maximum|a\s+perfect|perfect)",
            "deserves|should|must",
            "full|7|seven|maximum|perfect",
        ),
        (
            r"\b(?:system|developer)\s+(?:prompt|message|instruction|override)",
            "system|developer",
            "prompt|message|instruction|override",
        ),
        (rf"\bas\s+(?:the|an?)\s+(?:ai\s+)?{_GRADER}\s*,?\s+you\b", _GRADER_WORDS, "you"),
    )
]


@dataclass
class Fenced:
    """A candidate text made safe to put in a judge prompt, and what was neutralised."""

    block: str
    """The fenced block to insert in the prompt (explanation, markers and the neutralised text)."""
    text: str
    """The neutralised text alone."""
    begin: str
    end: str
    findings: list[str] = field(default_factory=list)
    """One short description per neutralised item; non-empty means the flag is set."""

    @property
    def flags(self) -> list[str]:
        return [INJECTION_FLAG] if self.findings else []

    def cut(self, reply: str) -> str:
        """`reply` without any region between this fence's markers: text a model quotes back is never its verdict."""
        return cut_fenced(reply, self.begin, self.end)


def special_tokens_of(config: ModelConfig) -> tuple[str, ...]:
    """The special tokens of a local judge's tokenizer (`transformers` engine, model folder), else ()."""
    if config.engine != "transformers" or not Path(config.model).is_dir():
        return ()
    return _folder_special_tokens(str(Path(config.model).resolve()))


@cache
def _folder_special_tokens(folder: str) -> tuple[str, ...]:
    """Special tokens named in a model folder's tokenizer files (added tokens flagged special, bos/eos/pad/unk)."""
    found: set[str] = set()
    for name in ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        try:
            data = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        added = data.get("added_tokens_decoder", {})
        entries = list(added.values()) if isinstance(added, dict) else []
        entries += data.get("added_tokens", []) if isinstance(data.get("added_tokens"), list) else []
        found |= {e["content"] for e in entries if isinstance(e, dict) and e.get("special") and e.get("content")}
        for key in ("bos_token", "eos_token", "pad_token", "unk_token", "additional_special_tokens"):
            value = data.get(key)
            for item in value if isinstance(value, list) else [value]:
                content = item.get("content") if isinstance(item, dict) else item
                if isinstance(content, str) and content:
                    found.add(content)
    return tuple(sorted(found))


def nonce(*parts: str) -> str:
    """A 16-hex-digit fence code from the judge name, problem id and the text itself."""
    return content_id("fence", *parts, length=16)


def _sentence_span(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of the sentence (or line) around text[start:end]."""
    left = max(text.rfind(c, 0, start) for c in ".!?\n") + 1
    rights = [i for i in (text.find(c, end) for c in ".!?\n") if i != -1]
    right = min(rights) + 1 if rights else len(text)
    if right > 0 and text[right - 1] == "\n":
        right -= 1
    return left, right


def _look_alike(token: str) -> str:
    """`token` with its brackets swapped for look-alikes, so no tokenizer matches it as a special token."""
    swap = {"<": "‹", ">": "›", "[": "⟦", "]": "⟧", "|": "¦", "｜": "¦"}
    return "".join(swap.get(c, c) for c in token)


def neutralise(
    text: str, code: str, *, instructions: bool = True, special_tokens: tuple[str, ...] = ()
) -> tuple[str, list[str]]:
    """`text` with fence markers, the fence code, control tokens, verdict-like and role tags and (optionally)
    grader instructions and notes neutralised."""
    findings: list[str] = []
    if code in text:
        findings.append("contains the fence code")
        text = text.replace(code, "[code removed]")
    if _MARKER.search(text):
        findings.append("contains a fence-like marker")
        text = _MARKER.sub(lambda m: "‹‹‹" + m.group(0)[3:-3] + "›››", text)
    controls = sorted({m.group(0) for m in _CONTROL.finditer(text)} | {t for t in special_tokens if t and t in text})
    if controls:
        findings.append(f"chat-template control tokens: {', '.join(controls)[:120]}")
        for token in sorted(controls, key=len, reverse=True):
            text = text.replace(token, _look_alike(token))
        text = _CONTROL.sub(lambda m: _look_alike(m.group(0)), text)  # case variants of the same tokens
    if _COMMENT.search(text):
        findings.append("contains a hidden-comment marker")
        text = _COMMENT.sub(lambda m: _look_alike(m.group(0)), text)

    spans: list[tuple[int, int]] = []
    if instructions:
        folded = _folded(text)
        for pattern in _screen(_INSTRUCTIONS, folded):
            for m in pattern.finditer(text):
                findings.append(f"instruction to the grader: {m.group(0)[:60]!r}")
                spans.append(_sentence_span(text, m.start(), m.end()))
        for m in _ROLE_BLOCK.finditer(text):
            findings.append(f"text in a {m.group(1).lower()} block")
            spans.append((m.start(), m.end()))
        for pattern in _screen(_NOTES, folded):
            for m in pattern.finditer(text):
                findings.append(f"text posing as a system, developer or grader note: {m.group(0).strip()[:60]!r}")
                spans.append(_sentence_span(text, m.start(), m.end()))
    if spans:
        spans.sort()
        merged = [spans[0]]
        for s, e in spans[1:]:
            if s <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], e))
            else:
                merged.append((s, e))
        for s, e in reversed(merged):
            text = text[:s] + (" " if s and text[s - 1] not in " \n" else "") + REMOVED + text[e:]

    roles = _ROLE_TAG.findall(text)
    if roles:
        findings.append(f"role tags: {', '.join(sorted({name.lower() for _, name, _ in roles}))}")
        text = _ROLE_TAG.sub(lambda m: f"‹{m.group(1)}{m.group(2)}{m.group(3)}›", text)
    tags = _TAG.findall(text)
    if tags:
        names = sorted({name.lower() for _, name, _ in tags})
        findings.append(f"verdict-like tags: {', '.join(names)}")
        text = _TAG.sub(lambda m: f"‹{m.group(1)}{m.group(2)}{m.group(3)}›", text)
    return text, findings


def fence(
    text: str,
    *,
    judge: str,
    problem_id: str,
    what: str = "PROOF",
    frame: str = "proof_fence",
    instructions: bool = True,
    special_tokens: tuple[str, ...] = (),
) -> Fenced:
    """Neutralise `text` and wrap it between unforgeable markers, with the explanation for the judge.

    `frame` is the template of the explanation: `proof_fence` for a candidate's own text,
    `report_fence` for a grader's report on a candidate (scaffold self-checks), which keeps
    its sentences (`instructions=False`: a report's own verdict reads like "award full marks")
    but still loses markers, control tokens and verdict-like tags it may have quoted from the
    candidate. `special_tokens`: the judge tokenizer's own special tokens, neutralised too.
    """
    code = nonce(judge, problem_id, text)
    clean, findings = neutralise(text, code, instructions=instructions, special_tokens=special_tokens)
    begin, end = f"<<<BEGIN {what} {code}>>>", f"<<<END {what} {code}>>>"
    block = render(template(frame), what=what.lower(), code=code, begin=begin, end=end, content=clean)
    return Fenced(block=block, text=clean, begin=begin, end=end, findings=findings)
