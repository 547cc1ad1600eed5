"""What one request carries along the pipeline (`RequestContext`) and what the pipeline hands the HTTP
adapter back (`Reply`, `StreamOut`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, AsyncIterator

from hedgeway.types import Principal, Usage


@dataclass(slots=True)
class RequestContext:
    request_id: str
    principal: Principal
    started: float  # perf_counter at arrival
    ts: float  # wall clock at arrival (ledger)
    ticket: Any = None  # the admission ticket, settled by the request's one ledger record
    cache: str | None = None  # the cache outcome ("miss", "hit-exact", …) when a cache is in front
    route: dict[str, Any] | None = None  # the router's decision, when one was made
    trace: str | None = None  # the caller's W3C traceparent, when tracing is on
    prompt: str | None = None  # the request's messages as JSON, only with ledger.log_prompts
    embedding: Any = None  # the request's MiniLM vector, when its route's router reads one


@dataclass(slots=True)
class Reply:
    body: bytes
    headers: dict[str, str]
    usage: Usage = Usage()
    cost: Decimal = Decimal(0)


@dataclass(slots=True)
class StreamOut:
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]
