"""A deterministic stand-in model for the demo, tests and benchmarks. It never leaves the process.

The answer is a function of the request: the same model + messages + sampling parameters give the same
text; different prompts give different text. Timing follows the configured time to first token and
tokens/second; `failure_rate` makes a share of calls fail with a 503-like `UpstreamError`. Every answer
says it is simulated: the model id is `simulated/<model>` and responses carry `x-hedgeway-simulated: true`.

Token counts are realistic approximations: prompt tokens ≈ characters / 4 + 4 per message (the usual
rule of thumb for English with BPE tokenizers); every generated word counts as one completion token.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import struct
import time
from typing import Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hedgeway.config import format_loc
from hedgeway.errors import ConfigError, UpstreamError, UpstreamRejected, UpstreamTimeout
from hedgeway.providers.base import StreamReply
from hedgeway.types import ChatRequest, Deployment, UpstreamReply, Usage
from hedgeway.wire import completion_id, embedding, message

WORDS = ("the system data model request answer latency cost token cache route budget team query value "
         "result check first then because therefore however simple complex option step plan measure "
         "service user customer report error update change review test design choose compare explain "
         "consider example summary improve reduce increase ensure deploy monitor quality price").split()
SIM_HEADERS = {"x-hedgeway-simulated": "true"}


class SimSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ttft_ms: float = Field(200.0, ge=0)
    tokens_per_second: float = Field(60.0, gt=0)
    failure_rate: float = Field(0.0, ge=0, le=1)
    max_output_tokens: int = Field(120, ge=1)
    embedding_dim: int = Field(64, ge=2, le=4096)
    label: str = "simulated"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _stop(words: list[str], stop: Any) -> tuple[list[str], str | None]:
    """The answer cut before the earliest stop string it contains, as an upstream honours `stop`, and the
    string matched (named in the choice's `stop_reason`, as vLLM does), or None."""
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else ()
    text = " ".join(words)
    found = [(text.find(s), s) for s in stops if isinstance(s, str) and s and s in text]
    if not found:
        return words, None
    at, matched = min(found)
    return text[:at].split(" "), matched


def prompt_tokens(messages: list) -> int:
    chars = sum(len(_text(m.get("content"))) for m in messages if isinstance(m, dict))
    return math.ceil(chars / 4) + 4 * len(messages)


class SimulatedProvider:
    price_namespace: ClassVar[str] = "simulated"
    settings_model: ClassVar[type[SimSettings]] = SimSettings  # a subclass's settings extend these

    @classmethod
    def validate_settings(cls, d: Any, path: str) -> dict[str, Any]:
        try:
            return cls.settings_model.model_validate(d.settings).model_dump()
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"{path}.settings.{format_loc(err['loc'])}", err["msg"]) from None

    def __init__(self, deployment: Deployment):
        self.deployment = deployment
        self.s = SimSettings(**{k: v for k, v in deployment.settings.items() if k in SimSettings.model_fields})
        self.model_id = f"simulated/{deployment.model}"

    def _plan(self, request: ChatRequest) -> tuple[list[str], Usage, str, str | None]:
        """(words of the answer, usage of one choice, finish_reason, the stop string that ended it)."""
        b = request.body
        key = orjson.dumps([self.deployment.model, b.get("messages"), b.get("temperature"), b.get("top_p"),
                            b.get("seed"), b.get("max_tokens"), b.get("tools")], option=orjson.OPT_SORT_KEYS)
        digest = hashlib.blake2b(key, digest_size=8).digest()
        rng = random.Random(digest)
        limit = b.get("max_completion_tokens") or b.get("max_tokens") or self.s.max_output_tokens
        n = max(1, min(int(limit), self.s.max_output_tokens // 3 + rng.randrange(self.s.max_output_tokens)))
        words = [f"[{self.s.label}]"] + [rng.choice(WORDS) for _ in range(n - 1)]
        finish = "length" if n == int(limit) else "stop"
        words, matched = _stop(words, b.get("stop"))
        if matched is not None:
            finish = "stop"
        usage = Usage(prompt_tokens=prompt_tokens(b.get("messages") or []), completion_tokens=len(words))
        return words, usage, finish, matched

    async def _first_token(self) -> None:
        d = self.deployment
        wait = self.s.ttft_ms / 1000
        deadline = d.first_byte_timeout or d.timeout
        if wait > deadline:
            await asyncio.sleep(deadline)
            raise UpstreamTimeout("simulated upstream did not respond in time", deployment=d.id)
        await asyncio.sleep(wait)
        if self.s.failure_rate and random.random() < self.s.failure_rate:
            raise UpstreamError("simulated upstream failure (503)", deployment=d.id, upstream_status=503)

    def _envelope(self, created: int) -> dict[str, Any]:
        return {"id": completion_id(), "created": created, "model": self.model_id,
                "system_fingerprint": "hedgeway-sim"}

    async def chat(self, request: ChatRequest) -> UpstreamReply:
        words, usage, finish, matched = self._plan(request)
        await self._first_token()
        await asyncio.sleep(len(words) / self.s.tokens_per_second)
        n = request.body.get("n") or 1
        stop = {"stop_reason": matched} if matched is not None else {}
        body = {**self._envelope(int(time.time())), "object": "chat.completion",
                "choices": [{"index": i, "message": message(" ".join(words)), "logprobs": None,
                             "finish_reason": finish, **stop} for i in range(n)],
                "usage": {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens * n,
                          "total_tokens": usage.prompt_tokens + usage.completion_tokens * n}}
        usage = Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens * n)
        return UpstreamReply(body=orjson.dumps(body), usage=usage, headers=SIM_HEADERS)

    async def stream(self, request: ChatRequest) -> StreamReply:
        words, usage, finish, matched = self._plan(request)
        await self._first_token()
        env = self._envelope(int(time.time()))
        env["object"] = "chat.completion.chunk"
        if request.include_usage:  # OpenAI: present only when asked for, null on every chunk but the last
            env["usage"] = None
        n = request.body.get("n") or 1
        end = {"finish_reason": finish, **({"stop_reason": matched} if matched is not None else {})}

        def event(choices: list, usage_obj: Any = None) -> bytes:
            chunk = {**env, "choices": choices}
            if usage_obj is not None:
                chunk["usage"] = usage_obj
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        first = event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])

        async def rest():
            per_event = 4  # words per event: keeps the simulator cheap while still streaming
            for c in range(n):  # choice after choice (OpenAI interleaves them; clients key on the index)
                if c:
                    yield event([{"index": c, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
                for i in range(0, len(words), per_event):
                    await asyncio.sleep(per_event / self.s.tokens_per_second)
                    text = (" " if i else "") + " ".join(words[i:i + per_event])
                    yield event([{"index": c, "delta": {"content": text}, "finish_reason": None}])
                yield event([{"index": c, "delta": {}, **end}])
            completion = usage.completion_tokens * n
            yield event([], {"prompt_tokens": usage.prompt_tokens, "completion_tokens": completion,
                             "total_tokens": usage.prompt_tokens + completion})
            yield b"data: [DONE]\n\n"

        gen = rest()
        return StreamReply(first, gen, lambda: None, headers=SIM_HEADERS)

    async def embeddings(self, body: dict[str, Any]) -> UpstreamReply:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        await self._first_token()
        dim = body.get("dimensions") or self.s.embedding_dim
        if type(dim) is not int or not 1 <= dim <= 4096:  # as a real upstream would: a 400, not a crash
            raise UpstreamRejected("'dimensions' must be an integer from 1 to 4096", param="dimensions",
                                   deployment=self.deployment.id)
        data, tokens = [], 0
        for i, text in enumerate(inputs):
            text = text if isinstance(text, str) else orjson.dumps(text).decode()
            tokens += math.ceil(len(text) / 4)
            seed = hashlib.blake2b(f"{self.deployment.model}\0{text}".encode(), digest_size=8).digest()
            rng = random.Random(struct.unpack("<Q", seed)[0])
            vec = [rng.gauss(0, 1) for _ in range(dim)]
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            data.append({"object": "embedding", "index": i,
                         "embedding": embedding([v / norm for v in vec], body.get("encoding_format"))})
        body_out = {"object": "list", "data": data, "model": self.model_id,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return UpstreamReply(body=orjson.dumps(body_out), usage=Usage(prompt_tokens=tokens), headers=SIM_HEADERS)

    def close(self) -> None:
        pass
