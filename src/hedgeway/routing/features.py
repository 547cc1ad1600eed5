"""Prompt features: what routers read from a request, computed once per request in well under 1 ms.

`prompt_of(body_or_prompt)` turns an OpenAI request body, a `messages` list or a plain string into a
`Prompt` (the user text, the system text, conversation depth, tools/vision asked, expected tokens).
`cues(prompt)` scores transparent signals in [0, 1] (code, reasoning, math, multi-step, constraints,
greeting, length, depth, tools). Regexes are compiled at import; only the first `SCAN_CHARS` characters
are scanned (length itself is measured on the whole text), so cost is bounded for any prompt size.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

SCAN_CHARS = 4000

# Keyword cues are looked up word by word in one dict (a regex alternation per cue costs ~1 ms on 6 kB);
# a word matches by itself or by its first 6 letters (analyse/analysis/analyze → "analys"/"analyz").
_KEYWORDS: dict[str, tuple[str, ...]] = {
    "code": ("def", "class", "function", "return", "import", "include", "select", "python", "javascript",
             "typescript", "java", "rust", "golang", "sql", "regex", "bash", "html", "css", "json", "yaml", "api",
             "code", "coding", "program", "script", "implem", "debug", "compil", "refact", "algori", "bug", "bugs",
             "stack", "except", "variab", "compile", "runtime", "async", "thread", "query", "parse", "parser"),
    "reasoning": ("why", "explain", "prove", "proof", "derive", "analys", "analyz", "compare", "contra",
                  "evalua", "assess", "justif", "reason", "tradeo", "critiq", "implic", "infer", "deduce", "argue",
                  "hypoth", "design", "archit", "optimi", "strate", "plan", "tradeoffs", "consid", "implications"),
    "math": ("calculate", "calcul", "compute", "solve", "equati", "integr", "deriva", "probab", "theorem",
             "matrix", "percen", "average", "ratio", "remain", "sum", "product", "total", "fraction", "square",
             "mean", "median", "variance", "how_many", "how_much", "expected_value"),
    "steps": ("by_step", "first", "firstly", "then", "finally", "next", "after_that", "second", "third",
              "afterwards", "subsequently"),
    "constraints": ("must", "exactly", "at_least", "at_most", "no_more", "without", "only", "format", "table",
                    "bullet", "words", "sentences", "limit", "constr", "ensure", "should"),
}
_CUE_OF: dict[str, str] = {w: cue for cue, ws in _KEYWORDS.items() for w in ws}
_HEADS = frozenset(w.split("_")[0] for w in _CUE_OF if "_" in w)  # first words of two-word cues
_MATH_SYM = re.compile(r"\d\s*[-+*/^=×÷]\s*\d")
_LIST_ITEM = re.compile(r"^\s{0,8}(?:\d+[.)]|[-*•])\s", re.MULTILINE)
_GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|yo|hiya|good (?:morning|afternoon|evening)|thanks?(?: you)?|thank you|ok(?:ay)?|"
    r"bye|goodbye|how are you|what'?s up|cheers)\b[\s!.,?]*(?:there|again|so much|a lot)?[\s!.,?]*$",
    re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(slots=True)
class Prompt:
    text: str  # user turns, joined
    system: str = ""
    turns: int = 1  # user messages
    tools: bool = False
    vision: bool = False
    max_tokens: int = 0
    embedding: Any = None  # the request's MiniLM vector when the gateway computed one (routers that read it)


def _content_text(content: Any, prompt: Prompt) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: text, image_url, input_audio…
        out = []
        for part in content:
            if isinstance(part, dict):
                if part.get("type") == "text":
                    out.append(str(part.get("text", "")))
                elif part.get("type") in ("image_url", "image"):
                    prompt.vision = True
        return "\n".join(out)
    return ""


def prompt_of(source: Any) -> Prompt:
    """A `Prompt` from a request body (dict with `messages`), a messages list, or a string."""
    if isinstance(source, str):
        return Prompt(source)
    body = source if isinstance(source, dict) else {"messages": source}
    prompt = Prompt("", turns=0)
    users, system = [], []
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        text = _content_text(msg.get("content"), prompt)
        role = msg.get("role")
        if role == "user":
            users.append(text)
            prompt.turns += 1
        elif role in ("system", "developer"):
            system.append(text)
    prompt.text = "\n".join(users)
    prompt.system = "\n".join(system)
    prompt.turns = max(prompt.turns, 1)
    prompt.tools = bool(body.get("tools") or body.get("functions"))
    mt = body.get("max_completion_tokens") or body.get("max_tokens")
    prompt.max_tokens = mt if isinstance(mt, int) else 0
    return prompt


def _sat(count: int, full: float) -> float:
    return min(count / full, 1.0)


CUES = ("length", "code", "reasoning", "math", "steps", "constraints", "questions", "depth", "tools",
        "greeting", "system")


def _keyword_counts(ws: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(_KEYWORDS, 0)
    get = _CUE_OF.get
    heads = _HEADS
    prev = ""
    for w in ws:
        cue = get(w) or get(w[:6])
        if cue is None and prev in heads:
            cue = get(prev + "_" + w)
        if cue is not None:
            counts[cue] += 1
        prev = w
    return counts


def cues(p: Prompt) -> dict[str, float]:
    """Each cue in [0, 1]; see CUES for the order used by vector forms."""
    text = p.text[:SCAN_CHARS]
    n = len(p.text)
    k = _keyword_counts(words(text))
    code_marks = text.count("```") + text.count("=>") + text.count("};") + text.count("();") + text.count("#include")
    return {
        "length": min(max(math.log10(n + 1) - 1.6, 0.0) / 2.3, 1.0),  # 0 below ~40 chars, 1 at ~8,000
        "code": _sat(k["code"] + 2 * code_marks, 2),
        "reasoning": _sat(k["reasoning"], 2),
        "math": _sat(k["math"] + len(_MATH_SYM.findall(text)), 2),
        "steps": _sat(k["steps"] + len(_LIST_ITEM.findall(text)), 3),
        "constraints": _sat(k["constraints"], 3),
        "questions": _sat(text.count("?"), 3),
        "depth": _sat(p.turns - 1, 4),
        "tools": 1.0 if p.tools else 0.0,
        "greeting": 1.0 if n < 60 and _GREETING.match(text) else 0.0,
        "system": min(len(p.system) / 2000, 1.0),
    }


def words(text: str) -> list[str]:
    return _WORD.findall(text[:SCAN_CHARS].lower())


def estimate_tokens(p: Prompt) -> int:
    """Rough prompt + completion tokens (4 characters per token) for context-length checks."""
    return (len(p.text) + len(p.system)) // 4 + p.max_tokens
