"""The provider contract: what a wire format must implement to sit behind Hedgeway.

One `Provider` instance exists per deployment and owns its connection pool. Providers speak their own
wire format outbound and hand back OpenAI-format results (bytes), so everything after them is
format-agnostic. Every failure is raised as an `UpstreamError` subclass (errors.py), never a foreign
exception.
"""

from __future__ import annotations

import re
from typing import Any, AsyncIterator, Callable, ClassVar, Protocol

from hedgeway.types import ChatRequest, Deployment, UpstreamReply

SECRETISH = re.compile(r"(sk|pk|key|api|tok)[-_][A-Za-z0-9_\-*]{6,}", re.IGNORECASE)


class StreamReply:
    """An upstream SSE stream in OpenAI chunk format whose first chunk has already arrived, so that a
    failure before the first byte can still fall back to another deployment.
    Iterate `chunks()` once; call `close()` to abandon it early (the connection is not reused)."""

    __slots__ = ("first", "rest", "close", "headers")

    def __init__(self, first: bytes, rest: AsyncIterator[bytes], close: Callable[[], None],
                 headers: dict[str, str] | None = None):
        self.first = first
        self.rest = rest
        self.close = close
        self.headers = headers or {}

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self.first
        async for chunk in self.rest:
            yield chunk


class Provider(Protocol):
    price_namespace: ClassVar[str]  # catalogue prefix for price lookup ("openai", "anthropic", ...)

    @classmethod
    def validate_settings(cls, deployment_in: Any, path: str) -> dict[str, Any]:
        """Check the deployment's provider-specific `settings` (raise ConfigError naming `path`) and
        return them resolved. May add `default_api_base`."""

    def __init__(self, deployment: Deployment): ...

    async def chat(self, request: ChatRequest) -> UpstreamReply:
        """A complete OpenAI chat.completion body, with usage parsed."""

    async def stream(self, request: ChatRequest) -> StreamReply:
        """OpenAI `chat.completion.chunk` SSE events ending with `data: [DONE]`; the upstream is asked
        for usage whether or not the client asked (the caller strips it if the client did not)."""

    async def embeddings(self, body: dict[str, Any]) -> UpstreamReply:
        """An OpenAI embeddings list body, or raise UnsupportedOperation."""

    def close(self) -> None: ...


def redact(message: str, *secrets: str) -> str:
    """Upstream error text with anything key-like removed (some providers echo part of the key)."""
    for secret in secrets:
        if secret:
            message = message.replace(secret, "[redacted]")
    return SECRETISH.sub("[redacted]", message)[:500]
