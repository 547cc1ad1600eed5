"""The provider contract: what a wire format must implement to sit behind Hedgeway.

One `Provider` instance exists per deployment and owns its connection pool. Providers speak their own
wire format outbound and hand back OpenAI-format results (bytes), so everything after them is
format-agnostic. Every failure is raised as an `UpstreamError` subclass (errors.py), never a foreign
exception.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Callable, ClassVar, Protocol

from hedgeway.errors import ConfigError, UpstreamError, UpstreamRateLimited, UpstreamRejected
from hedgeway.redaction import MASK, SECRETISH, untraced
from hedgeway.types import ChatRequest, Deployment, UpstreamReply

# Upstream status -> how we treat it. 400/413/422: the client's request is bad, another deployment would
# say the same. 401/403/404 mean *this deployment* is misconfigured, so they stay fallback-eligible.
REJECTED = frozenset({400, 413, 422})


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
    """Upstream error text with anything key-like and any stack trace removed (some providers echo part of
    the key; llama.cpp's Python server puts its traceback in a 500). The gateway then masks every configured
    credential by value (redaction.py)."""
    message = untraced(message)
    for secret in secrets:
        if secret:
            message = message.replace(secret, MASK)
    return SECRETISH.sub(MASK, message)[:500]


def upstream_failure(status: int, text: str, deployment: str, retry_after: str | None = None) -> UpstreamError:
    """The error for a non-2xx upstream answer (`text` already redacted): 429 -> UpstreamRateLimited
    carrying Retry-After seconds; 400/413/422 -> UpstreamRejected (not fallback-eligible); 401/403 -> an
    eligible UpstreamError whose text never echoes the upstream's; anything else (5xx, Anthropic's 529
    overloaded, 404) -> an eligible UpstreamError."""
    kw = {"deployment": deployment, "upstream_status": status}
    if status == 429:
        try:
            seconds = float(retry_after) if retry_after else None
        except ValueError:  # an HTTP date: not worth parsing, the back-off applies
            seconds = None
        return UpstreamRateLimited(f"upstream rate limited (429): {text}", retry_after=seconds, **kw)
    if status in REJECTED:
        return UpstreamRejected(text, status_code=status, **kw)
    if status in (401, 403):
        text = "the deployment's credentials were rejected"
    return UpstreamError(f"upstream returned {status}: {text}", **kw)


def check_settings(settings: dict[str, Any], known: dict[str, tuple[Callable[[Any], bool], str]], path: str,
                   provider: str) -> None:
    """ConfigError naming `<path>.settings.<key>` for an unknown key or a value its check rejects."""
    for key, value in settings.items():
        if key not in known:
            raise ConfigError(f"{path}.settings.{key}", f"unknown {provider} setting; known: {', '.join(known)}")
        check, expected = known[key]
        if not check(value):
            raise ConfigError(f"{path}.settings.{key}", f"must be {expected}")


def header_block(lines: dict[str, str | None]) -> bytes:
    """Request header lines, built once per deployment; a None or empty value is left out."""
    return "".join(f"{k}: {v}\r\n" for k, v in lines.items() if v).encode("latin-1")
