"""The request path, in one direction: auth → plan → call with fallback → price → ledger → reply.

`Gateway` knows no HTTP and no SQL: the HTTP adapter hands it parsed requests and renders what it returns;
the ledger writer and metrics take records off the request path. Every request that passed auth and
parsing leaves exactly one ledger record, whether it succeeded, failed, or its client went away.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from itertools import count
from typing import Any, AsyncIterator

from hedgeway.auth import Authenticator
from hedgeway.config import Config
from hedgeway.errors import AllDeploymentsFailed, HedgewayError, InvalidRequest, UpstreamError
from hedgeway.fallback import Outcome, RetryPolicy, call_with_fallback
from hedgeway.ledger.base import BatchWriter, LedgerStore, Record
from hedgeway.metrics import Metrics
from hedgeway.pricing import cost
from hedgeway.providers import PROVIDERS, Provider, StreamReply
from hedgeway.routing import Planner
from hedgeway.sse import UsageTap
from hedgeway.types import ChatRequest, Principal, Usage

_PREFIX = os.urandom(4).hex()
_ids = count(1)


@dataclass(slots=True)
class RequestContext:
    request_id: str
    principal: Principal
    started: float  # perf_counter at arrival
    ts: float  # wall clock at arrival (ledger)


@dataclass(slots=True)
class Reply:
    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class StreamOut:
    headers: dict[str, str]
    chunks: AsyncIterator[bytes]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Gateway:
    def __init__(self, config: Config, store: LedgerStore):
        self.config = config
        self.auth = Authenticator(config.auth.master_key, config.auth.disabled)
        self.planner = Planner(config.models, config.routing.fallbacks, config.routing.strategy)
        self.policy = RetryPolicy(config.routing.num_retries, config.routing.retry_backoff,
                                  config.routing.max_retry_after)
        self.providers: dict[str, Provider] = {
            dep.id: PROVIDERS[dep.provider](dep) for dep in config.deployments.values()}
        self.ledger = BatchWriter(store, batch_size=config.ledger.batch_size,
                                  flush_interval=config.ledger.flush_interval)
        self.metrics = Metrics(self.planner.inflight,
                               lambda: (self.ledger.pending, self.ledger.written, self.ledger.failures))

    # --- steps ---
    def begin(self, key: str | None) -> RequestContext:
        """Authenticate and open the request's context (raises AuthenticationFailed)."""
        principal = self.auth.authenticate(key)
        return RequestContext(f"hw-{_PREFIX}-{next(_ids):x}", principal, time.perf_counter(), time.time())

    def ready(self) -> bool:
        """Ready to serve: the ledger's last write succeeded (no I/O here; probes must be cheap)."""
        return self.ledger.healthy

    def model_names(self) -> list[str]:
        return list(self.config.models)

    def _record(self, ctx: RequestContext, endpoint: str, model: str, status: int, **fields: Any) -> None:
        now = time.perf_counter()
        rec = Record(request_id=ctx.request_id, ts=ctx.ts, endpoint=endpoint, model_name=model,
                     deployment=fields.pop("deployment", None), provider=fields.pop("provider", None),
                     status=status, key_id=ctx.principal.key_id, team=ctx.principal.team,
                     latency_ms=_ms(now - ctx.started), **fields)
        self.ledger.submit(rec)
        self.metrics.observe(rec)

    def _usage_fields(self, outcome: Outcome, usage: Usage) -> dict[str, Any]:
        dep = outcome.deployment
        return {"deployment": dep.id, "provider": dep.provider, "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens, "cached_tokens": usage.cached_tokens,
                "cost": cost(usage, dep.price), "attempts": outcome.attempts, "route": self._route(outcome)}

    def _route(self, outcome: Outcome) -> str | None:
        if not outcome.failures:
            return None
        return "fallback after: " + "; ".join(f"{f.deployment} ({type(f).__name__})" for f in outcome.failures)

    def failed(self, ctx: RequestContext, endpoint: str, model: str, exc: HedgewayError, stream: bool) -> None:
        """Ledger record for a request that ends in an error response."""
        attempts = len(exc.failures) if isinstance(exc, AllDeploymentsFailed) else exc.attempts
        dep = exc.deployment if isinstance(exc, UpstreamError) else None
        self._record(ctx, endpoint, model, exc.status_code, error_type=type(exc).__name__, stream=stream,
                     attempts=attempts, deployment=dep, overhead_ms=_ms(time.perf_counter() - ctx.started))

    def _headers(self, ctx: RequestContext, outcome: Outcome, extra: dict[str, str]) -> tuple[dict, float]:
        overhead = max(time.perf_counter() - ctx.started - outcome.upstream_s, 0.0)
        headers = {"x-hedgeway-request-id": ctx.request_id, "x-hedgeway-deployment": outcome.deployment.id,
                   "x-hedgeway-overhead-ms": f"{overhead * 1000:.3f}"}
        if extra:
            headers.update(extra)
        return headers, overhead

    # --- endpoints ---
    async def _complete(self, endpoint: str, model: str, ctx: RequestContext, call) -> Reply:
        """One non-streaming request: plan, call along the plan, record, reply."""
        outcome = await call_with_fallback(self.planner.plan(model), call, self.policy, self.planner.inflight)
        reply = outcome.result
        headers, overhead = self._headers(ctx, outcome, reply.headers)
        self._record(ctx, endpoint, model, 200, overhead_ms=_ms(overhead), **self._usage_fields(outcome, reply.usage))
        return Reply(reply.body, headers)

    async def chat(self, req: ChatRequest, ctx: RequestContext) -> Reply:
        return await self._complete("chat", req.model, ctx, lambda d: self.providers[d.id].chat(req))

    async def embeddings(self, model: str, body: dict[str, Any], ctx: RequestContext) -> Reply:
        return await self._complete("embeddings", model, ctx, lambda d: self.providers[d.id].embeddings(body))

    async def chat_stream(self, req: ChatRequest, ctx: RequestContext) -> StreamOut:
        """Starts the stream (falling back until a deployment sends its first event) and returns the
        relay. The relay writes the ledger record when it ends — completed, broken, or abandoned."""
        groups = self.planner.plan(req.model)
        outcome = await call_with_fallback(groups, lambda d: self.providers[d.id].stream(req), self.policy,
                                           self.planner.inflight, hold=True)
        ttft = time.perf_counter() - ctx.started
        headers, overhead = self._headers(ctx, outcome, outcome.result.headers)
        return StreamOut(headers, self._relay(outcome, req, ctx, ttft, overhead))

    async def _relay(self, outcome: Outcome, req: ChatRequest, ctx: RequestContext, ttft: float,
                     overhead: float) -> AsyncIterator[bytes]:
        stream: StreamReply = outcome.result
        tap = UsageTap(keep_usage=req.include_usage)
        status, error = 499, "ClientDisconnected"  # unless the loop below finishes
        try:
            try:
                async for chunk in stream.chunks():
                    out = tap.feed(chunk)
                    if out:
                        yield out
                tail = tap.flush()
                if tail:
                    yield tail
                status, error = 200, None
            except UpstreamError as exc:  # the stream broke after it started: tell the client in-band
                status, error = 200, f"{type(exc).__name__}MidStream"
                exc.message = f"upstream stream interrupted: {exc.message}"
                yield b"data: " + exc.to_body() + b"\n\n"
        finally:
            if status != 200 or error:
                stream.close()
            self.planner.inflight[outcome.deployment.id] -= 1
            usage = tap.usage or Usage()
            fields = self._usage_fields(outcome, usage)
            self._record(ctx, "chat", req.model, status, stream=True, error_type=error, ttft_ms=_ms(ttft),
                         overhead_ms=_ms(overhead), **fields)

    async def close(self) -> None:
        for provider in self.providers.values():
            provider.close()
        self.ledger.close()


def parse_chat(body: Any) -> ChatRequest:
    """Validate the parts of an OpenAI chat request the gateway relies on; the rest passes through."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model", code="missing_required_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is a required property and must be a non-empty array",
                             param="messages", code="missing_required_parameter" if messages is None else "invalid_type")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream", code="invalid_type")
    opts = body.get("stream_options")
    include_usage = bool(opts.get("include_usage")) if isinstance(opts, dict) else False
    return ChatRequest(model=model, body=body, stream=stream, include_usage=include_usage)

