"""The canary's quality signal: how closely a candidate's answer agrees with the baseline's answer to the
same request. ROUGE-L F1 over lower-cased word tokens (longest common subsequence): 1.0 for the same
answer, near 0 for unrelated ones; cheap (a bit-parallel LCS, off the request path) and offline."""

from __future__ import annotations

from typing import Any

import orjson

from hedgeway.evals import rouge


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 of two answers: rouge-score's arithmetic over `unicode` tokens (hedgeway.evals.rouge:
    rouge-score's own tokens on ASCII text, and words of any script kept), symmetric; 1.0 for two answers
    without a word (both empty agree)."""
    x, y = rouge.unicode_tokens(a), rouge.unicode_tokens(b)
    return 1.0 if not x and not y else rouge.rouge_l(x, y).fmeasure


def answer_text(body: bytes) -> str:
    """The first choice's text of an OpenAI chat.completion body ("" when there is none)."""
    try:
        msg: Any = orjson.loads(body)["choices"][0]["message"]
        return msg.get("content") or orjson.dumps(msg.get("tool_calls") or "").decode()
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return ""
