"""The canary's quality signal: how closely a candidate's answer agrees with the baseline's answer to the
same request. ROUGE-L F1 over lower-cased word tokens (longest common subsequence): 1.0 for the same
answer, near 0 for unrelated ones; cheap (O(n·m) on two answers, off the request path) and offline."""

from __future__ import annotations

import re
from typing import Any

import orjson

_WORD = re.compile(r"\w+")


def lcs_len(x: list[str], y: list[str]) -> int:
    """Length of the longest common subsequence (O(len(x)·len(y)) time, O(len(y)) memory)."""
    prev = [0] * (len(y) + 1)
    for tok in x:
        cur = [0]
        for j, other in enumerate(y):
            cur.append(prev[j] + 1 if tok == other else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 of two texts (1.0 for two empty ones)."""
    x, y = _WORD.findall(a.lower()), _WORD.findall(b.lower())
    if not x or not y:
        return float(x == y)
    lcs = lcs_len(x, y)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(x), lcs / len(y)
    return 2 * precision * recall / (precision + recall)


def answer_text(body: bytes) -> str:
    """The first choice's text of an OpenAI chat.completion body ("" when there is none)."""
    try:
        msg: Any = orjson.loads(body)["choices"][0]["message"]
        return msg.get("content") or orjson.dumps(msg.get("tool_calls") or "").decode()
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return ""
