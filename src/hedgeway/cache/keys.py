"""What a cached answer is keyed on.

* `exact_key`: every request field that can change the answer, canonically serialised (sorted keys) and
  hashed (blake2b-128), namespaced by tenant. Transport-only fields (stream, stream_options, user,
  metadata, the gateway's own `cache`) are left out, so a streamed and a plain request share an entry.
* `fingerprint`: the same minus the last user turn — the context a semantic neighbour must share exactly
  (tenant, model name, system prompt, earlier turns, tools, sampling parameters). Semantic search only
  ever looks inside one fingerprint's bucket, so a cross-tenant or cross-model hit is impossible by
  construction, not by threshold. The numbers in the last user turn are part of it too: embeddings
  barely see them ("reset the password of account 17" and "… account 42" score ≈ 0.98), and a question
  about another account, amount or date is a different question (measured: bench/soak.py, README Cache).
"""

from __future__ import annotations

import re
from hashlib import blake2b
from typing import Any

import orjson

from hedgeway.types import ChatRequest, Principal

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

# Fields that do not change the answer's content (how it is delivered, who to bill/attribute).
IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "store", "cache", "service_tier"})


def tenant(principal: Principal) -> str:
    """The cache namespace: a team shares its answers; a key without a team only with itself."""
    return f"team:{principal.team}" if principal.team else f"key:{principal.key_id}"


def _hash(obj: Any) -> str:
    data = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return blake2b(data, digest_size=16).hexdigest()


def answer_fields(req: ChatRequest) -> dict[str, Any]:
    body = {k: v for k, v in req.body.items() if k not in IGNORED}
    body["model"] = req.model  # the logical name the client asked for
    return body


def exact_key(ns: str, req: ChatRequest) -> str:
    return _hash([ns, answer_fields(req)])


def last_user_index(messages: list[dict]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return -1


def user_text(message: dict) -> str | None:
    """The text of a user turn (string content or the text parts of a content list); None when it carries
    anything else (images, audio), which semantic matching cannot judge."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                return None
            texts.append(str(part.get("text", "")))
        return "\n".join(texts)
    return None


def semantic_parts(ns: str, req: ChatRequest) -> tuple[str, str] | None:
    """(fingerprint, last user text), or None when the request has no semantic form: no user turn, a
    non-text user turn, or turns after the last user turn (an assistant/tool continuation)."""
    messages = req.body["messages"]
    i = last_user_index(messages)
    if i < 0 or i != len(messages) - 1:
        return None
    text = user_text(messages[i])
    if not text or not text.strip():
        return None
    fields = answer_fields(req)
    fields["messages"] = messages[:i]
    return _hash([ns, "semantic", fields, _NUMBER.findall(text)]), text
