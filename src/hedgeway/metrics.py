"""Prometheus metrics, folded from the ledger record each request already builds.

`observe(record)` costs a few dict increments and one bisect per histogram (~2 µs). It is done in line on
purpose: deferring it to a batch on the same event loop (the GIL allows no other core) would cost the same
CPU and add a periodic stall to the latency tail. Gauges (`llm_queue_depth`, ledger backlog) are read live
at scrape time.

Exposed (text format 0.0.4):
    hedgeway_requests_total{model,deployment,status}       counter
    hedgeway_request_duration_seconds{model}               histogram
    hedgeway_ttft_seconds{model}                           histogram (streaming requests)
    hedgeway_overhead_seconds                              histogram (time in the gateway, not upstream)
    hedgeway_tokens_total{model,deployment,type}           counter (type: prompt|completion)
    hedgeway_cost_usd_total{model,deployment}              counter
    hedgeway_errors_total{type}                            counter
    llm_queue_depth{deployment}                            gauge: requests waiting for a slot (max_concurrency)
    hedgeway_inflight_requests{deployment}                 gauge: calls under way (never the waiting ones)
    hedgeway_ledger_pending / _written_total / _write_failures_total
Other steps add their own families through `sections` (callables returning Prometheus text, read at
scrape time): the router's counters and breaker states, the limits' budget use and backend health.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from decimal import Decimal
from typing import Callable, Collection, Mapping, Sequence

from hedgeway.ledger.base import Record
from hedgeway.queueing import Gate, waiting

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1)


class Histogram:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts):
            running += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        out.append(f"{name}_sum{{{labels}}} {self.sum}")
        out.append(f"{name}_count{{{labels}}} {self.count}")
        return out


def _esc(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """`models`: the model names labels may carry; any other name a client sends (an unknown model, which
    could be any text) is counted as "(unknown)", so labels stay bounded and never hold client text."""

    def __init__(self, inflight: Mapping[str, int], ledger_stats: Callable[[], tuple[int, int, int]],
                 models: Collection[str] | None = None, sections: Sequence[Callable[[], str]] = (),
                 gates: Mapping[str, Gate] | None = None):
        self._inflight = inflight  # includes the requests waiting at a gate
        self._gates = gates or {}
        self._sections = tuple(sections)
        self._ledger_stats = ledger_stats
        self._models = frozenset(models) if models is not None else None
        self.requests: dict[tuple, int] = defaultdict(int)
        self.tokens: dict[tuple, int] = defaultdict(int)
        self.cost: dict[tuple, Decimal] = defaultdict(Decimal)
        self.errors: dict[str, int] = defaultdict(int)
        self.duration: dict[str, Histogram] = {}
        self.ttft: dict[str, Histogram] = {}
        self.overhead = Histogram(OVERHEAD_BUCKETS)

    def observe(self, r: Record) -> None:
        dep = r.deployment or ""
        model = r.model_name
        if self._models is not None and model not in self._models:
            model = "(unknown)"
        self.requests[(model, dep, r.status)] += 1
        if r.error_type:
            self.errors[r.error_type] += 1
        if r.prompt_tokens:
            self.tokens[(model, dep, "prompt")] += r.prompt_tokens
        if r.completion_tokens:
            self.tokens[(model, dep, "completion")] += r.completion_tokens
        if r.cost:
            self.cost[(model, dep)] += r.cost
        hist = self.duration.get(model) or self.duration.setdefault(model, Histogram(LATENCY_BUCKETS))
        hist.observe(r.latency_ms / 1000)
        if r.ttft_ms is not None:
            hist = self.ttft.get(model) or self.ttft.setdefault(model, Histogram(LATENCY_BUCKETS))
            hist.observe(r.ttft_ms / 1000)
        self.overhead.observe(r.overhead_ms / 1000)

    def render(self) -> bytes:
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        family("hedgeway_requests_total", "counter", "Requests by model, deployment and HTTP status.")
        for (model, dep, status), n in self.requests.items():
            out.append(f'hedgeway_requests_total{{model="{_esc(model)}",deployment="{_esc(dep)}",status="{status}"}} {n}')
        family("hedgeway_request_duration_seconds", "histogram", "End-to-end request latency.")
        for model, h in self.duration.items():
            out += h.lines("hedgeway_request_duration_seconds", f'model="{_esc(model)}"')
        family("hedgeway_ttft_seconds", "histogram", "Time to first token of streaming requests.")
        for model, h in self.ttft.items():
            out += h.lines("hedgeway_ttft_seconds", f'model="{_esc(model)}"')
        family("hedgeway_overhead_seconds", "histogram", "Time spent in the gateway, excluding upstream calls.")
        out += self.overhead.lines("hedgeway_overhead_seconds", "")
        family("hedgeway_tokens_total", "counter", "Tokens by model, deployment and type.")
        for (model, dep, kind), n in self.tokens.items():
            out.append(f'hedgeway_tokens_total{{model="{_esc(model)}",deployment="{_esc(dep)}",type="{kind}"}} {n}')
        family("hedgeway_cost_usd_total", "counter", "Cost in USD by model and deployment.")
        for (model, dep), usd in self.cost.items():
            out.append(f'hedgeway_cost_usd_total{{model="{_esc(model)}",deployment="{_esc(dep)}"}} {usd}')
        family("hedgeway_errors_total", "counter", "Failed requests by error type.")
        for kind, n in self.errors.items():
            out.append(f'hedgeway_errors_total{{type="{_esc(kind)}"}} {n}')
        queued = {dep: waiting(self._gates, dep) for dep in self._inflight}
        family("llm_queue_depth", "gauge", "Requests waiting at the gateway for a slot of the deployment.")
        for dep, n in queued.items():
            out.append(f'llm_queue_depth{{deployment="{_esc(dep)}"}} {n}')
        family("hedgeway_inflight_requests", "gauge", "Calls under way per deployment (not the waiting ones).")
        for dep, n in self._inflight.items():
            out.append(f'hedgeway_inflight_requests{{deployment="{_esc(dep)}"}} {n - queued[dep]}')
        pending, written, failures = self._ledger_stats()
        family("hedgeway_ledger_pending", "gauge", "Ledger records queued, not yet written.")
        out.append(f"hedgeway_ledger_pending {pending}")
        family("hedgeway_ledger_written_total", "counter", "Ledger records written.")
        out.append(f"hedgeway_ledger_written_total {written}")
        family("hedgeway_ledger_write_failures_total", "counter", "Failed ledger batch writes (retried).")
        out.append(f"hedgeway_ledger_write_failures_total {failures}")
        text = "\n".join(out) + "\n" + "".join(section() for section in self._sections)
        return text.encode()
