"""Frozen value objects shared by every step of the request path. Money is `Decimal`, always."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Money = Decimal
MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class PriceCard:
    """USD per million tokens. `source` says where the figures came from (catalogue date or config)."""

    input: Decimal = Decimal(0)
    output: Decimal = Decimal(0)
    cached_input: Decimal | None = None  # None: cached input is billed as input
    cache_write: Decimal | None = None  # prompt-cache creation (Anthropic); None: billed as input
    source: str = "config"
    # Amortised from a GPU-hour rate (a self-hosted deployment): USD per GPU-hour, GPUs, and the throughput
    # (tokens/s) the config assumed; None for token-priced cards.
    gpu_hour: Decimal | None = None
    gpus: int = 1
    tokens_per_second: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # part of prompt_tokens served from the provider's prompt cache
    cache_write_tokens: int = 0  # part of prompt_tokens written to the provider's prompt cache

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Deployment:
    """One place that serves a logical model: a provider wire format + where + how it is priced.

    `id` is unique across the config and is what ledger rows and the `x-hedgeway-deployment` header name.
    `settings` holds provider-specific options (e.g. the simulator's TTFT, Azure's api_version).
    """

    id: str
    model_name: str
    provider: str
    model: str
    api_base: str = ""
    api_key: str = field(default="", repr=False)
    timeout: float = 60.0
    first_byte_timeout: float | None = None
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    price: PriceCard = PriceCard()
    settings: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    max_concurrency: int | None = None  # slots; beyond them requests wait at the gateway (queueing.py)
    queue_timeout: float = 30.0  # seconds a request may wait for a slot
    max_queue: int = 100  # requests that may wait


@dataclass(frozen=True, slots=True)
class Budget:
    """A spend cap in USD on one scope ("global", "key:<id>", "user:<id>", "team:<id>") per period
    ("daily" | "weekly" | "monthly" | "total"; periods reset at 00:00 UTC, weeks on Monday)."""

    scope: str
    limit: Decimal
    period: str = "monthly"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Requests and/or tokens per minute on one scope ("key:<id>", "team:<id>", "model:<name>", …)."""

    scope: str
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. `key_id` is a non-secret identifier (never the key itself).

    `models` limits which model names the key may use (None: all). `budgets` and `limits` are the
    caps that apply to this caller (its key's, user's and team's), resolved when the key is loaded."""

    key_id: str
    team: str | None = None
    user: str | None = None
    models: frozenset[str] | None = None
    budgets: tuple[Budget, ...] = ()
    limits: tuple[RateLimit, ...] = ()
    metadata: dict[str, Any] | None = field(default=None, compare=False, hash=False)


@dataclass(slots=True)
class ChatRequest:
    """An inbound chat request. `body` is the client's JSON as parsed, passed through to OpenAI-format
    upstreams with only `model` (and usage options when streaming) rewritten."""

    model: str
    body: dict[str, Any]
    stream: bool = False
    include_usage: bool = False
    cache: dict[str, Any] | None = None  # per-request cache control (body `cache` field + Cache-Control)


@dataclass(slots=True)
class UpstreamReply:
    """A complete (non-streaming) upstream answer, already in OpenAI response format."""

    body: bytes
    usage: Usage
    headers: dict[str, str] = field(default_factory=dict)
