"""Pairwise judging of a route's two tiers (pure: no I/O).

The judge model sees the user's request and two answers, A and B, and ends its reply with a verdict.
Every pair is asked twice, once in each order, so a judge that prefers a position cannot invent a
winner: the two verdicts, turned into "which tier won", are combined — agreeing verdicts give that
winner, disagreeing ones a tie (0.5, verdict "split"). A reply with no readable verdict is "unparsed"
and yields no label (never a guess).

    judge_messages(messages, first, second) -> the judge's chat messages (A = first, B = second)
    parse_verdict(reply)                     -> "A" | "B" | "tie" | None (unparsed)
    combine(strong_first, weak_first)        -> (verdict, strong_wins): ("strong", 1.0), ("weak", 0.0),
                                                ("tie", 0.5), ("split", 0.5) or ("unparsed", None)
"""

from __future__ import annotations

import re
from typing import Any

import orjson

MAX_CHARS = 6000  # per message and per answer: enough to judge, bounded judge cost

SYSTEM = (
    "You are an impartial judge. Compare the two AI assistants' answers to the user's request below. "
    "Judge helpfulness, correctness, depth and clarity. The order in which the answers appear, their length "
    "and the assistants' names must not influence you. After a brief explanation, end your reply with one "
    "final line: [[A]] if assistant A's answer is better, [[B]] if assistant B's answer is better, "
    "[[C]] for a tie.")

_SIDES = {"a": "A", "b": "B", "c": "tie", "tie": "tie", "draw": "tie", "equal": "tie", "both": "tie",
          "neither": "tie", "none": "tie"}
_BRACKETS = re.compile(r"\[\[\s*(a|b|c|tie)\s*\]\]", re.IGNORECASE)
_NAMED = r"(?:assistant|answer|response|output|model)?\s*\(?\s*(a|b|c|tie|draw|equal|both|neither|none)\s*\)?"
# "Verdict: A", "Final verdict - [B]", "Winner = tie", "Better response: Assistant A", "The better answer is B."
_LABELLED = re.compile(r"^(?:the\s+)?(?:final\s+)?(?:verdict|winner|decision|choice|preference|"
                       r"better(?:\s+(?:answer|response))?|preferred(?:\s+(?:answer|response))?)"
                       r"\s*(?:is)?\s*[:=\-]?\s*\[?" + _NAMED + r"\]?\s*[.!]?$", re.IGNORECASE)
_BARE = re.compile(r"^\[?" + _NAMED + r"\]?\s*[.!]?$", re.IGNORECASE)  # "A", "Assistant B.", "(A)", "tie"
_SENTENCE = re.compile(r"^(?:(?:assistant|answer|response)\s+)?(a|b)(?:'s\s+(?:answer|response))?\s+is\s+"
                       r"(?:clearly\s+|slightly\s+|much\s+)?(?:the\s+)?(?:better|preferred|superior|stronger)\b"
                       r"[^.!]*[.!]?$", re.IGNORECASE)
_TIE = re.compile(r"^(?:it'?s\s+a\s+tie|both\s+(?:answers|responses|are)\b.*\bequal(?:ly)?\b.*)[.!]?$",
                  re.IGNORECASE)
_JSON_KEYS = ("winner", "verdict", "better", "preference", "choice")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def judge_messages(messages: list[dict], first: str, second: str) -> list[dict]:
    """The judge's messages: the conversation (role-tagged, each message cut at MAX_CHARS, the whole at
    2 × MAX_CHARS from its end, where the request is), then A and B (each cut at MAX_CHARS)."""
    convo = "\n\n".join(f"{m.get('role', 'user')}: {_text(m.get('content'))[:MAX_CHARS]}"
                        for m in messages if isinstance(m, dict))[-2 * MAX_CHARS:]
    user = (f"[User request]\n{convo}\n\n"
            f"[The start of assistant A's answer]\n{first[:MAX_CHARS]}\n[The end of assistant A's answer]\n\n"
            f"[The start of assistant B's answer]\n{second[:MAX_CHARS]}\n[The end of assistant B's answer]")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def _side(word: str | None) -> str | None:
    return _SIDES.get(word.lower()) if word else None


def parse_verdict(reply: str) -> str | None:
    """The verdict a judge's reply ends with: "A", "B", "tie", or None when it has none or contradicts
    itself (both [[A]] and [[B]]). Accepted: MT-Bench's [[A]]/[[B]]/[[C]] anywhere; a JSON object with a
    winner/verdict key; or a last line such as "Verdict: A", "Assistant B is better.", "B", "Tie"."""
    marks = {_side(m) for m in _BRACKETS.findall(reply)}
    if len(marks) == 1:
        return marks.pop()
    if len(marks) > 1:
        return None
    stripped = reply.strip().strip("`").strip()
    fenced = stripped.removeprefix("json").strip()  # ```json {...}```
    if fenced.startswith("{"):
        try:
            obj = orjson.loads(fenced)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            for key in _JSON_KEYS:
                if isinstance(obj.get(key), str):
                    m = _BARE.match(obj[key].strip())
                    return _side(m.group(1)) if m else None
            return None
    lines = [t for t in (re.sub(r"[*_`#>]", "", ln).strip() for ln in stripped.splitlines()) if t]  # markdown
    if not lines:
        return None
    last = lines[-1]
    for pattern in (_LABELLED, _BARE, _SENTENCE):
        m = pattern.match(last)
        if m:
            return _side(m.group(1))
    return "tie" if _TIE.match(last) else None


def _strong_score(verdict: str, strong_is: str) -> float:
    return 0.5 if verdict == "tie" else (1.0 if verdict == strong_is else 0.0)


def combine(strong_first: str | None, weak_first: str | None) -> tuple[str, float | None]:
    """The label from the two orders' verdicts: `strong_first` was asked with the strong tier's answer as
    A, `weak_first` with it as B. Returns (verdict, strong_wins)."""
    if strong_first is None or weak_first is None:
        return "unparsed", None
    one, two = _strong_score(strong_first, "A"), _strong_score(weak_first, "B")
    if one != two:
        return "split", 0.5
    return {1.0: "strong", 0.0: "weak", 0.5: "tie"}[one], one
