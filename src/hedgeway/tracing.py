"""OpenTelemetry traces: one span per request, exported over OTLP/HTTP (JSON encoding) to a collector.

    tracing:
      endpoint: http://otel-collector:4318        # OTLP/HTTP base URL; spans go to {endpoint}/v1/traces
      headers: {authorization: os.environ/OTLP_AUTH}
      service_name: hedgeway
      sample_ratio: 1.0                             # for requests without a sampled parent
      interval: 1.0                                 # seconds between exports

Contract:
  * Not configured: `build_tracer` returns None and the request path does nothing at all (one `is None`).
  * Configured: spans are built from the ledger record *after* the response, on the exporter's thread, so
    the request path only appends (record, traceparent) to a bounded deque. A full queue drops the span
    and counts it; a collector that fails or is slow loses that batch (counted), never blocks a request.
  * A W3C `traceparent` request header makes the span a child of the caller's span (same trace id) and its
    sampled flag decides; otherwise `sample_ratio` does.
  * Attributes follow the OpenTelemetry GenAI semantic conventions (`gen_ai.operation.name`,
    `gen_ai.request.model`, `gen_ai.provider.name`, `gen_ai.usage.input_tokens` / `output_tokens`) plus
    Hedgeway's own (`hedgeway.cost_usd`, deployment, cache, attempts, route). No prompt text, no key.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import urllib.error
import urllib.request
from collections import deque
from urllib.parse import urlsplit
from typing import Any

import orjson
from pydantic import Field

from hedgeway.ledger.base import Record
from hedgeway.strict import Strict

log = logging.getLogger("hedgeway.tracing")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_OPERATION = {"chat": "chat", "messages": "chat", "responses": "chat", "embeddings": "embeddings"}
SPAN_KIND_SERVER = 2
STATUS_OK, STATUS_ERROR = 1, 2


class TracingIn(Strict):
    endpoint: str = Field(min_length=1)
    headers: dict[str, str] = {}
    service_name: str = "hedgeway"
    sample_ratio: float = Field(1.0, ge=0, le=1)
    interval: float = Field(1.0, gt=0)
    max_queue: int = Field(10_000, ge=1)
    batch_size: int = Field(512, ge=1)
    timeout: float = Field(5.0, gt=0)


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}  # OTLP JSON: 64-bit ints are strings
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


def span(rec: Record, traceparent: str | None) -> dict[str, Any] | None:
    """The OTLP span of one request, or None when it is not sampled. Pure, except for random ids."""
    parent = _TRACEPARENT.match(traceparent) if traceparent else None
    if parent is not None:
        if not int(parent.group(3), 16) & 1:
            return None
        trace_id, parent_id = parent.group(1), parent.group(2)
    else:
        trace_id, parent_id = os.urandom(16).hex(), ""
    op = _OPERATION.get(rec.endpoint, rec.endpoint)
    start = int(rec.ts * 1e9)
    attrs = [_attr("gen_ai.operation.name", op), _attr("gen_ai.request.model", rec.model_name),
             _attr("gen_ai.usage.input_tokens", rec.prompt_tokens),
             _attr("gen_ai.usage.output_tokens", rec.completion_tokens),
             _attr("http.response.status_code", rec.status), _attr("hedgeway.request_id", rec.request_id),
             _attr("hedgeway.cost_usd", float(rec.cost)), _attr("hedgeway.attempts", rec.attempts),
             _attr("hedgeway.stream", rec.stream), _attr("hedgeway.overhead_ms", rec.overhead_ms)]
    optional = {"gen_ai.provider.name": rec.provider, "hedgeway.deployment": rec.deployment,
                "hedgeway.team": rec.team, "hedgeway.cache": rec.cache, "hedgeway.route": rec.route,
                "hedgeway.ttft_ms": rec.ttft_ms, "error.type": rec.error_type}
    attrs += [_attr(k, v) for k, v in optional.items() if v is not None]
    failed = rec.status >= 500 or (rec.error_type or "").endswith("MidStream")
    return {"traceId": trace_id, "spanId": os.urandom(8).hex(), "parentSpanId": parent_id,
            "name": f"{op} {rec.model_name}", "kind": SPAN_KIND_SERVER,
            "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + int(rec.latency_ms * 1e6)),
            "attributes": attrs, "status": {"code": STATUS_ERROR if failed else STATUS_OK}}


class Tracer:
    """Queues finished requests and exports their spans from a daemon thread (see the module contract)."""

    def __init__(self, cfg: TracingIn):
        self.cfg = cfg
        self.url = cfg.endpoint.rstrip("/") + "/v1/traces"
        self.headers = {"Content-Type": "application/json", **cfg.headers}
        self.resource = {"attributes": [_attr("service.name", cfg.service_name)]}
        self.queue: deque[tuple[Record, str | None]] = deque()
        self.exported = self.dropped = self.failed = 0
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="hedgeway-tracing", daemon=True)
        self._thread.start()

    def submit(self, rec: Record, traceparent: str | None) -> None:
        """Called on the event loop for every ledger record: an append, or a counted drop."""
        if traceparent is None and self.cfg.sample_ratio < 1 and random.random() >= self.cfg.sample_ratio:
            return
        if len(self.queue) >= self.cfg.max_queue:
            self.dropped += 1
            return
        self.queue.append((rec, traceparent))

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.cfg.interval)
            self.flush()

    def flush(self) -> None:
        """Export everything queued now, in batches (on the exporter thread, or at close)."""
        while self.queue:
            batch = []
            while self.queue and len(batch) < self.cfg.batch_size:
                s = span(*self.queue.popleft())
                if s is not None:
                    batch.append(s)
            if batch:
                self._post(batch)

    def _post(self, spans: list[dict[str, Any]]) -> None:
        body = orjson.dumps({"resourceSpans": [{"resource": self.resource, "scopeSpans": [
            {"scope": {"name": "hedgeway"}, "spans": spans}]}]})
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.cfg.timeout) as resp:
                resp.read()
            self.exported += len(spans)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self.failed += len(spans)
            log.warning("OTLP export of %d spans to %s failed: %s", len(spans),
                        urlsplit(self.url).netloc.rpartition("@")[2], getattr(exc, "reason", None) or type(exc).__name__)

    def render_metrics(self) -> str:
        out = []
        for name, value in (("exported", self.exported), ("dropped", self.dropped), ("failed", self.failed)):
            out += [f"# TYPE hedgeway_trace_spans_{name}_total counter", f"hedgeway_trace_spans_{name}_total {value}"]
        return "\n".join(out) + "\n"

    def close(self) -> None:
        """Stop the thread and export what is left (bounded by the collector's timeout)."""
        self._stop = True
        self._wake.set()
        self._thread.join(self.cfg.timeout + 1)
        self.flush()


def build_tracer(cfg: TracingIn | None) -> Tracer | None:
    return Tracer(cfg) if cfg is not None else None
