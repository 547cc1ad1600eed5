"""The request path, in one direction: auth → admission (access, limits, budget reservation) → cache →
plan → call with fallback → price → ledger (settling the reservation) → reply.

`Gateway` knows no HTTP and no SQL: the HTTP adapter hands it parsed requests and renders what it returns;
the ledger writer and metrics take records off the request path. Every request that passed auth and
parsing leaves exactly one ledger record, whether it succeeded, failed, was served from cache, or its
client went away — and settles its admission ticket exactly once, in the same place.
"""

from __future__ import annotations

import asyncio
import os
import time
from decimal import Decimal
from itertools import count
from typing import Any, AsyncIterator

import orjson

from hedgeway.auth import Authenticator
from hedgeway.cache import CacheHit, Lookup, build_cache
from hedgeway.cache.stream import assemble
from hedgeway.canary import open_canaries
from hedgeway.canary.quality import answer_text, rouge_l
from hedgeway.config import Config
from hedgeway.context import Reply, RequestContext, StreamOut
from hedgeway.errors import AllDeploymentsFailed, HedgewayError, UpstreamError
from hedgeway.fallback import Outcome, RetryPolicy, call_with_fallback
from hedgeway.keys import open_ring
from hedgeway.ledger.base import BatchWriter, LedgerStore, Record
from hedgeway.ledger.spool import Spool
from hedgeway.limits import build_admission
from hedgeway.metrics import Metrics
from hedgeway.pricing import cost
from hedgeway.providers import PROVIDERS, Provider, StreamReply
from hedgeway.queueing import build_gates
from hedgeway.redaction import Redactor
from hedgeway.routing import Plan, Planner
from hedgeway.routing.learner import Learner
from hedgeway.routing.record import route_json
from hedgeway.routing.vectors import route_vector
from hedgeway.shadow import Answer, ShadowIn, Shadows
from hedgeway.sse import UsageTap
from hedgeway.tokens import TokenCounter
from hedgeway.tracing import build_tracer
from hedgeway.types import ChatRequest, Usage

_PREFIX = os.urandom(4).hex()
_ids = count(1)
def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


class Gateway:
    def __init__(self, config: Config, store: LedgerStore):
        self.config = config
        self.auth = Authenticator(config.auth.master_key, config.auth.disabled, open_ring(config))
        self.planner = Planner(config.models, config.routing.fallbacks, config.routing.strategy,
                               config.router)
        self.policy = RetryPolicy(config.routing.num_retries, config.routing.retry_backoff,
                                  config.routing.max_retry_after)
        self.providers: dict[str, Provider] = {
            dep.id: PROVIDERS[dep.provider](dep) for dep in config.deployments.values()}
        self.gates = build_gates(config.deployments)  # max_concurrency slots + their queues
        lc = config.ledger
        spool = Spool(lc.spool_path, lc.url, lc.spool_max_bytes) if lc.spool_path else None
        self.ledger = BatchWriter(store, batch_size=lc.batch_size, flush_interval=lc.flush_interval, spool=spool)
        self.admission = build_admission(config)
        self.overlap = config.limits.backend == "redis" and not config.limits.leasing  # see _admit_lookup
        self.admission.restore(store, self.auth.ring)
        self.redact = Redactor(config.secrets)
        self.tokens = TokenCounter()  # loaded by the first unreported usage, on its worker thread
        self.tracer = build_tracer(config.tracing)
        self.log_prompts = config.ledger.log_prompts
        self.canaries = self.planner.canaries = open_canaries(config, config.routing.canary_poll)
        self._tasks: set[asyncio.Task] = set()  # after-response work (canary checks), awaited at close
        sections = [self.planner.render_metrics, self.admission.render_metrics, self.canaries.render_metrics]
        if self.tracer is not None:
            sections.append(self.tracer.render_metrics)
        self.shadows = Shadows(config.routing.shadows, config.ledger.url) if config.routing.shadows else None
        if self.shadows is not None:
            sections.append(self.shadows.render_metrics)
        self.learner = Learner(config, self._again, self._background)
        sections.append(self.learner.render_metrics)
        self.metrics = Metrics(self.planner.inflight,
                               lambda: (self.ledger.pending, self.ledger.written, self.ledger.failures),
                               models=self.planner.names(), sections=sections, gates=self.gates)
        self.cache = build_cache(config, self)

    # --- steps ---
    def begin(self, key: str | None, traceparent: str | None = None) -> RequestContext:
        """Authenticate and open the request's context (raises AuthenticationFailed)."""
        principal = self.auth.authenticate(key)
        return RequestContext(f"hw-{_PREFIX}-{next(_ids):x}", principal, time.perf_counter(), time.time(),
                              trace=traceparent)

    def ready(self) -> bool:
        """Ready to serve: the ledger's last write succeeded (no I/O here; probes must be cheap)."""
        return self.ledger.healthy

    def model_names(self) -> list[str]:
        return self.planner.names()

    async def _admit(self, ctx: RequestContext, model: str, body: dict[str, Any]) -> None:
        if self.log_prompts:  # opt-in (ledger.log_prompts): what `hedgeway eval sample` builds sets from
            ctx.prompt = orjson.dumps(body.get("messages", body.get("input"))).decode()
        ctx.ticket = await self.admission.admit(ctx.principal, model, body)

    def _plan(self, ctx: RequestContext, model: str, body: dict[str, Any] | None) -> Plan:
        plan = self.planner.plan(model, body, embedding=ctx.embedding)
        ctx.route = plan.route
        return plan

    def _call(self, ctx: RequestContext, method: str, arg: Any):
        """The per-attempt call for the fallback loop: the deployment's own limits, then its provider —
        in one of its slots when it has `max_concurrency` (a stream keeps the slot until it ends)."""
        providers, admission, gates, redact = self.providers, self.admission, self.gates, self.redact

        async def call(dep):
            await admission.deployment(dep, ctx.ticket)
            gate = gates.get(dep.id)
            try:
                if gate is None:
                    return await getattr(providers[dep.id], method)(arg)
                return await gate.run(getattr(providers[dep.id], method), arg)
            except HedgewayError as exc:  # upstream text, on its way to error bodies and logs
                exc.message = redact(exc.message)
                raise
        return call

    def _record(self, ctx: RequestContext, endpoint: str, model: str, status: int, **fields: Any) -> None:
        now = time.perf_counter()
        rec = Record(request_id=ctx.request_id, ts=ctx.ts, endpoint=endpoint, model_name=model,
                     deployment=fields.pop("deployment", None), provider=fields.pop("provider", None),
                     status=status, key_id=ctx.principal.key_id, team=ctx.principal.team,
                     latency_ms=_ms(now - ctx.started), cache=ctx.cache, prompt=ctx.prompt, **fields)
        if ctx.ticket is not None:
            self.admission.settle(ctx.ticket, Usage(rec.prompt_tokens, rec.completion_tokens), rec.cost)
        self.ledger.submit(rec)
        self.metrics.observe(rec)
        if self.tracer is not None:
            self.tracer.submit(rec, ctx.trace)
        if ctx.route is not None and "canary" in ctx.route:
            self.canaries.observe(ctx.route, rec)

    def _usage_fields(self, ctx: RequestContext, outcome: Outcome, usage: Usage) -> dict[str, Any]:
        dep = outcome.deployment
        price = cost(usage, dep.price)
        hedged = None
        if outcome.hedged:
            # The cancelled call never reported usage, but its upstream read the same prompt: bill that
            # (its output before the cancel is unknown), so hedging's price shows in spend and budgets.
            hedged = (outcome.hedged, cost(Usage(usage.prompt_tokens), self.providers[outcome.hedged].deployment.price))
            price += hedged[1]
        return {"deployment": dep.id, "provider": dep.provider, "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens, "cached_tokens": usage.cached_tokens,
                "cost": price, "attempts": outcome.attempts, "route": route_json(ctx.route, outcome.failures, hedged)}

    def failed(self, ctx: RequestContext, endpoint: str, model: str, exc: HedgewayError, stream: bool) -> None:
        """Ledger record for a request that ends in an error response."""
        failures = exc.failures if isinstance(exc, AllDeploymentsFailed) else []
        attempts = len(failures) if failures else exc.attempts
        dep = exc.deployment if isinstance(exc, UpstreamError) else None
        self._record(ctx, endpoint, model, exc.status_code, error_type=type(exc).__name__, stream=stream,
                     attempts=attempts, deployment=dep, overhead_ms=_ms(time.perf_counter() - ctx.started),
                     route=route_json(ctx.route, failures))

    def _headers(self, ctx: RequestContext, deployment: str, upstream_s: float,
                 extra: dict[str, str] | None) -> tuple[dict, float]:
        overhead = max(time.perf_counter() - ctx.started - upstream_s, 0.0)
        headers = {"x-hedgeway-request-id": ctx.request_id, "x-hedgeway-deployment": deployment,
                   "x-hedgeway-overhead-ms": f"{overhead * 1000:.3f}"}
        if ctx.cache is not None:
            headers["x-hedgeway-cache"] = ctx.cache
        if ctx.route is not None:
            headers["x-hedgeway-route"] = orjson.dumps(ctx.route).decode()
        if extra:
            headers.update(extra)
        return headers, overhead

    # --- cache ---
    async def _admit_lookup(self, ctx: RequestContext, req: ChatRequest) -> Lookup | None:
        """Admission, then the cache lookup; both at once when every admission waits on Redis (limits there
        without leases): one round trip of latency instead of two. A refused request's lookup is cancelled."""
        cache = self.cache
        pending = asyncio.ensure_future(cache.lookup(ctx.principal, req)) if cache and self.overlap else None
        try:
            await self._admit(ctx, req.model, req.body)
        except BaseException:
            if pending is not None:
                pending.cancel()
            raise
        lookup = await (pending or cache.lookup(ctx.principal, req)) if cache is not None else None
        ctx.cache = lookup and lookup.status
        return lookup

    def _hit_headers(self, ctx: RequestContext, hit: CacheHit) -> dict[str, str]:
        extra = {"x-hedgeway-cache-similarity": f"{hit.similarity:.4f}"} if hit.similarity is not None else None
        return self._headers(ctx, "cache", 0.0, extra)[0]

    def _record_hit(self, ctx: RequestContext, endpoint: str, model: str, hit: CacheHit, stream: bool) -> None:
        self._record(ctx, endpoint, model, 200, stream=stream, saved=hit.saved, attempts=0,
                     overhead_ms=_ms(time.perf_counter() - ctx.started))

    # --- endpoints ---
    async def _complete(self, endpoint: str, model: str, ctx: RequestContext, body: dict[str, Any] | None,
                        call) -> Reply:
        """One non-streaming request: plan, call along the plan, record, reply."""
        plan = self._plan(ctx, model, body)
        outcome = await call_with_fallback(plan.groups, call, self.policy, self.planner.inflight,
                                           guard=plan.guard)
        reply, usage = outcome.result, outcome.result.usage
        headers, overhead = self._headers(ctx, outcome.deployment.id, outcome.upstream_s, reply.headers)
        estimated = body is not None and not usage.prompt_tokens  # a chat answer without usage: count it
        if estimated:
            usage = await asyncio.to_thread(self.tokens.answer_usage, body, reply.body)
        fields = self._usage_fields(ctx, outcome, usage)
        self._record(ctx, endpoint, model, 200, overhead_ms=_ms(overhead), usage_estimated=estimated, **fields)
        return Reply(reply.body, headers, usage, fields["cost"])

    async def chat(self, req: ChatRequest, ctx: RequestContext, endpoint: str = "chat") -> Reply:
        lookup = await self._admit_lookup(ctx, req)
        if lookup is not None and lookup.hit is not None:
            self._record_hit(ctx, endpoint, req.model, lookup.hit, False)
            return Reply(lookup.hit.body, self._hit_headers(ctx, lookup.hit))
        if self.planner.wants_embedding(req.model):  # a proven `trained` route: no coroutine for the rest
            ctx.embedding = await route_vector(self.cache, req, lookup)
        reply = await self._complete(endpoint, req.model, ctx, req.body, self._call(ctx, "chat", req))
        if lookup is not None and lookup.status == "miss":
            self.cache.store(lookup, reply.body, reply.usage, reply.cost)
        if ctx.route is not None and "canary" in ctx.route and self.canaries.wants_check(ctx.route):
            self._background(self._canary_check(ctx, req, reply.body))
        spec = self.shadows.pick(req.model, ctx.route) if self.shadows is not None else None
        if spec is not None:
            primary = Answer(reply.headers["x-hedgeway-deployment"], _ms(time.perf_counter() - ctx.started),
                             reply.cost, reply.body)
            self._background(self._shadow(ctx, req, spec, primary))
        self.learner.after(ctx, req, reply.body, reply.headers["x-hedgeway-deployment"])
        return reply

    async def embeddings(self, model: str, body: dict[str, Any], ctx: RequestContext) -> Reply:
        await self._admit(ctx, model, body)
        return await self._complete("embeddings", model, ctx, None, self._call(ctx, "embeddings", body))

    async def chat_stream(self, req: ChatRequest, ctx: RequestContext, endpoint: str = "chat") -> StreamOut:
        """Starts the stream (falling back until a deployment sends its first event) and returns the
        relay. The relay writes the ledger record when it ends — completed, broken, or abandoned."""
        lookup = await self._admit_lookup(ctx, req)
        if lookup is not None and lookup.hit is not None:
            return StreamOut(self._hit_headers(ctx, lookup.hit), self._replay(ctx, endpoint, req, lookup.hit))
        if self.planner.wants_embedding(req.model):  # a proven `trained` route: no coroutine for the rest
            ctx.embedding = await route_vector(self.cache, req, lookup)
        plan = self._plan(ctx, req.model, req.body)
        outcome = await call_with_fallback(plan.groups, self._call(ctx, "stream", req), self.policy,
                                           self.planner.inflight, hold=True, guard=plan.guard)
        ttft = time.perf_counter() - ctx.started
        headers, overhead = self._headers(ctx, outcome.deployment.id, outcome.upstream_s,
                                          outcome.result.headers)
        keep = lookup if lookup is not None and lookup.status == "miss" else None
        spec = self.shadows.pick(req.model, ctx.route) if self.shadows is not None else None
        return StreamOut(headers, self._relay(outcome, req, ctx, endpoint, ttft, overhead, keep, spec))

    async def _replay(self, ctx: RequestContext, endpoint: str, req: ChatRequest,
                      hit: CacheHit) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.cache.replay(hit, req):
                yield chunk
        finally:
            self._record_hit(ctx, endpoint, req.model, hit, True)

    async def _relay(self, outcome: Outcome, req: ChatRequest, ctx: RequestContext, endpoint: str,
                     ttft: float, overhead: float, lookup: Lookup | None,
                     shadow: ShadowIn | None) -> AsyncIterator[bytes]:
        stream: StreamReply = outcome.result
        # A budget's reservation holds `ticket.out` output tokens: the stream stops there (sse.py counts).
        tap = UsageTap(req.include_usage, self.redact.relayed, ctx.ticket.out if ctx.ticket is not None else 0)
        kept: list[bytes] = []  # the relayed chunks: for the cache, a shadow, and counting unreported usage
        status, error = 499, "ClientDisconnected"  # unless the loop below finishes
        try:
            try:
                async for chunk in stream.chunks():
                    kept.append(chunk)
                    out = tap.feed(chunk)
                    if out:
                        yield out
                    if tap.capped:
                        kept[-1] = out  # what was relayed of it, for the count
                        break
                tail = tap.stop(req.body.get("n")) if tap.capped else tap.flush()
                if not (tap.done or tap.capped):  # a clean end, but a cut stream
                    raise UpstreamError("the stream ended without [DONE]", deployment=outcome.deployment.id)
                if tail:
                    yield tail
                status, error = 200, None
            except UpstreamError as exc:  # the stream broke after it started: tell the client in-band
                status, error = 200, f"{type(exc).__name__}MidStream"
                exc.message = self.redact(f"upstream stream interrupted: {exc.message}")
                yield b"data: " + exc.to_body() + b"\n\n"
        finally:
            if status != 200 or error or tap.capped:
                stream.close()  # abandoned, broken, or past its reserved output: cancel the upstream call
            self.planner.inflight[outcome.deployment.id] -= 1
            end = (outcome, req, ctx, endpoint, status, error, ttft, overhead, kept,
                   None if tap.capped else lookup, shadow)
            usage = tap.usage
            if usage is None or not usage.prompt_tokens:  # none (llama.cpp; a cut stream) or an empty one
                self._background(self._count_then_end(*end))  # count it, off the event loop
            else:
                self._end_stream(usage, False, *end)

    async def _count_then_end(self, *end: Any) -> None:
        """`_end_stream` with the usage counted by tokens.py (on a thread: it may wait for the tokenizer)."""
        req, kept = end[1], end[8]
        self._end_stream(await asyncio.to_thread(self.tokens.usage, req.body, kept), True, *end)

    def _end_stream(self, usage: Usage, estimated: bool, outcome: Outcome, req: ChatRequest, ctx: RequestContext,
                    endpoint: str, status: int, error: str | None, ttft: float, overhead: float, kept: list[bytes],
                    lookup: Lookup | None, shadow: ShadowIn | None) -> None:
        """A relayed stream's ledger record (settling its ticket), cache entry, shadow comparison and label."""
        fields = self._usage_fields(ctx, outcome, usage)
        self._record(ctx, endpoint, req.model, status, stream=True, error_type=error, ttft_ms=_ms(ttft),
                     overhead_ms=_ms(overhead), usage_estimated=estimated, **fields)
        if lookup is not None and error is None:
            self.cache.store_stream(lookup, kept, usage, fields["cost"])
        if error is None:
            self.learner.after(ctx, req, kept, outcome.deployment.id)
        if shadow is not None:
            primary = Answer(outcome.deployment.id, _ms(time.perf_counter() - ctx.started), fields["cost"],
                             assemble(kept) if error is None else None)
            if primary.body is None:  # nothing whole to compare with
                self.shadows.release(shadow)
            else:
                self._background(self._shadow(ctx, req, shadow, primary))

    async def _again(self, ctx: RequestContext, endpoint: str, model: str, req: ChatRequest,
                     canary: bool = True, tag: dict[str, Any] | None = None) -> tuple[Outcome, dict[str, Any]]:
        """The same request again to `model`, non-streaming, after the user has the answer (canary checks, shadows,
        labels), billed by its own ledger record (`endpoint`, route `tag`); a failure is recorded and raised."""
        again = RequestContext(f"{ctx.request_id}-{endpoint}", ctx.principal, time.perf_counter(), time.time(),
                               route=tag)
        body = {k: v for k, v in req.body.items() if k not in ("stream", "stream_options")}
        try:
            plan = self.planner.plan(model, body, canary=canary, embedding=ctx.embedding)
            outcome = await call_with_fallback(plan.groups, self._call(again, "chat", ChatRequest(model, body)),
                                               self.policy, self.planner.inflight, guard=plan.guard)
        except HedgewayError as exc:
            self.failed(again, endpoint, model, exc, False)
            raise
        fields = self._usage_fields(again, outcome, outcome.result.usage)
        self._record(again, endpoint, model, 200, **fields)
        return outcome, fields

    async def _canary_check(self, ctx: RequestContext, req: ChatRequest, answer: bytes) -> None:
        """The canary's quality signal: the baseline's answer to the same request, compared with the
        candidate's (endpoint "canary_check")."""
        try:
            outcome, _ = await self._again(ctx, "canary_check", req.model, req, canary=False)
        except HedgewayError:
            return
        self.canaries.agreed(ctx.route["canary"], rouge_l(answer_text(answer), answer_text(outcome.result.body)))

    async def _shadow(self, ctx: RequestContext, req: ChatRequest, spec: ShadowIn, primary: Answer) -> None:
        """A shadow copy (endpoint "shadow") to `spec.candidate`, compared with the user's answer."""
        started = time.perf_counter()
        try:
            try:
                outcome, fields = await self._again(ctx, "shadow", spec.candidate, req)
                shadow = Answer(outcome.deployment.id, _ms(time.perf_counter() - started), fields["cost"],
                                outcome.result.body)
            except HedgewayError as exc:
                shadow = Answer(getattr(exc, "deployment", None), _ms(time.perf_counter() - started), Decimal(0),
                                None, type(exc).__name__)
            await self.shadows.compare(spec, ctx.request_id, primary, shadow)
        finally:
            self.shadows.release(spec)

    def _background(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        for provider in self.providers.values():
            provider.close()
        if self.cache is not None:
            await self.cache.close()
        await self.admission.close()
        if self.auth.ring is not None:
            self.auth.ring.close()
        if self.tracer is not None:
            self.tracer.close()
        self.canaries.close()
        if self.shadows is not None:
            self.shadows.close()
        self.learner.close()
        self.ledger.close()
