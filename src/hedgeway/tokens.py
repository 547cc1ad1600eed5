"""Counting tokens the upstream did not report, offline: the prompt (with the chat template's overhead) and
the output a stream relayed.

    counter = TokenCounter()
    counter.usage(body, chunks) -> Usage           # blocking (call it in a thread): prompt + output tokens
    counter.answer_usage(body, answer) -> Usage    # the same for a plain chat.completion body

The tokenizer is quicktok's `cl100k_base` (exact tiktoken ids; it ships its vocabulary in the wheel, where
tiktoken would download it at first use and fail offline). One encoding for every model: the count is an
estimate for a model whose own tokenizer differs (Llama 3's vocabulary extends cl100k's; o200k counts a
few percent fewer tokens on English), and the ledger row says so (`usage_estimated`).

The chat template, which the upstream applies and the client never sees, costs per request:
- `TEMPLATE_PER_MESSAGE` = 5 tokens per message: ChatML's `<|im_start|>` role `\\n` … `<|im_end|>` `\\n`
  (OpenAI documents 3–4 for its models; Llama 3's header is 5);
- `TEMPLATE_PER_REQUEST` = 3 tokens priming the reply (`<|im_start|>assistant\\n`);
- `DEFAULT_SYSTEM` = 19 tokens more when the request has no system message: templates such as
  SmolLM2's insert their own (llama.cpp counted 39 prompt tokens for a 12-token, one-message prompt:
  19 + 5 + 12 + 3).
Budget reservations (limits/estimate.py) add the same overhead to their byte-based estimate.

The encoding is loaded at first use, on the worker thread that needs it (1–3 s, +36 MB RSS measured with
bench/overhead_ab.sh): a gateway whose upstreams always report usage never pays for it.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable, Mapping

import orjson

from hedgeway.types import Usage

TEMPLATE_PER_MESSAGE = 5
TEMPLATE_PER_REQUEST = 3
DEFAULT_SYSTEM = 19
ENCODING = "cl100k_base"


def template_tokens(messages: Any) -> int:
    """The chat template's tokens for a request's `messages` (see the module docstring)."""
    if not isinstance(messages, list):
        return TEMPLATE_PER_REQUEST
    system = any(isinstance(m, dict) and m.get("role") in ("system", "developer") for m in messages)
    return TEMPLATE_PER_MESSAGE * len(messages) + TEMPLATE_PER_REQUEST + (0 if system else DEFAULT_SYSTEM)


def _texts(value: Any) -> Iterable[str]:
    """Every string inside a message's content (text parts, tool-call arguments); not image data."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        kind = value.get("type")
        if kind == "text":
            yield from _texts(value.get("text"))
        elif kind not in ("image_url", "image", "input_audio"):
            for item in value.values():
                yield from _texts(item)


def _answer_texts(events: list[dict]) -> Iterable[str]:
    for event in events:
        for choice in event.get("choices") or ():
            delta = choice.get("delta") or {}
            for field in ("content", "refusal", "reasoning_content"):
                if isinstance(delta.get(field), str):
                    yield delta[field]
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") or {}
                yield (fn.get("name") or "") + (fn.get("arguments") or "")


class TokenCounter:
    """Counts with quicktok; `warm()` loads the tokenizer on a daemon thread (about 1 s of one core, with
    the GIL released, and 38 MB RSS), so the first stream without usage is recorded without that wait.
    Otherwise the first count loads it on its own (worker) thread."""

    def __init__(self):
        self._encoding = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._encoding is None:
                import quicktok

                self._encoding = quicktok.get_encoding(ENCODING)
        return self._encoding

    def count(self, text: str) -> int:
        return (self._encoding or self._load()).count(text)

    def prompt(self, body: Mapping[str, Any]) -> int:
        messages = body.get("messages")
        text = "\n".join(_texts([m.get("content") if isinstance(m, dict) else m for m in messages or ()]))
        tools = "\n".join(_texts(body.get("tools"))) + "\n".join(
            _texts([m.get("tool_calls") for m in messages or () if isinstance(m, dict)]))
        return self.count(text) + self.count(tools) + template_tokens(messages)

    def answer_usage(self, body: Mapping[str, Any], answer: bytes) -> Usage:
        """Estimated usage of a plain chat.completion `answer` to the request `body`."""
        try:
            choices = orjson.loads(answer).get("choices") or []
        except (orjson.JSONDecodeError, AttributeError):
            choices = []
        deltas = [{"choices": [{"delta": c.get("message") or {}} for c in choices if isinstance(c, dict)]}]
        return Usage(self.prompt(body), self.count("".join(_answer_texts(deltas))))

    def usage(self, body: Mapping[str, Any], chunks: list[bytes]) -> Usage:
        """Estimated usage of a stream: the request's prompt and what the relayed `chunks` carried."""
        from hedgeway.cache.stream import events

        return Usage(self.prompt(body), self.count("".join(_answer_texts(events(chunks)))))
