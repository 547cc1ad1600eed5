"""Per-deployment health: EWMA latency / TTFT / error rate and a circuit breaker.

Breaker states: `closed` (serving) → `open` after `failures` consecutive failures, or when at least
`slow_rate` of the last `window` calls were slower than `slow_call` → after `cooldown` seconds the next
plan may send one probe (`half-open`) → a successful probe closes it, a failed one re-opens it. A probe
that never reports back (the plan did not reach that deployment) frees the slot after another cooldown.

`Guard` is what the fallback loop sees for one route: the SLA deadline of each deployment and where to
report each attempt (health + router stats). All methods are O(1) and do no I/O.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping

from hedgeway.routing.config import BreakerIn

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


@dataclass(slots=True)
class DeploymentHealth:
    latency_s: float | None = None  # EWMA of whole non-streaming calls
    ttft_s: float | None = None  # EWMA of stream time to first event
    error_rate: float = 0.0  # EWMA of failures (1) and successes (0)
    calls: int = 0
    failures: int = 0
    consecutive: int = 0
    state: str = CLOSED
    opened_at: float = 0.0
    probe_at: float | None = None  # when the half-open probe was handed out
    slow: deque = field(default_factory=lambda: deque(maxlen=20))


class Health:
    def __init__(self, breaker: BreakerIn, alpha: float, deployment_ids):
        self.cfg = breaker
        self.alpha = alpha
        self.deps: dict[str, DeploymentHealth] = {
            d: DeploymentHealth(slow=deque(maxlen=breaker.window)) for d in deployment_ids}

    def usable(self, dep_id: str, now: float | None = None) -> bool:
        """May a plan include this deployment now? Hands out the half-open probe (once per cooldown)."""
        h = self.deps.get(dep_id)
        if h is None or h.state == CLOSED:
            return True
        now = time.monotonic() if now is None else now
        if h.state == OPEN and now - h.opened_at >= self.cfg.cooldown:
            h.state = HALF_OPEN
        if h.state == HALF_OPEN and (h.probe_at is None or now - h.probe_at >= self.cfg.cooldown):
            h.probe_at = now
            return True
        return False

    def record(self, dep_id: str, ok: bool, seconds: float, stream: bool, now: float | None = None) -> None:
        h = self.deps.get(dep_id)
        if h is None:
            return
        a = self.alpha
        h.calls += 1
        h.error_rate += a * ((0.0 if ok else 1.0) - h.error_rate)
        if ok:
            if stream:
                h.ttft_s = seconds if h.ttft_s is None else h.ttft_s + a * (seconds - h.ttft_s)
            else:
                h.latency_s = seconds if h.latency_s is None else h.latency_s + a * (seconds - h.latency_s)
        slow_limit = self.cfg.slow_call
        if slow_limit is not None:
            h.slow.append(seconds > slow_limit)
        now = time.monotonic() if now is None else now
        if ok:
            h.consecutive = 0
            if h.state == HALF_OPEN:
                h.state, h.probe_at = CLOSED, None
                h.slow.clear()
            elif (slow_limit is not None and len(h.slow) == h.slow.maxlen
                  and sum(h.slow) >= self.cfg.slow_rate * len(h.slow)):
                self._open(h, now)
            return
        h.failures += 1
        h.consecutive += 1
        if h.state == HALF_OPEN or h.consecutive >= self.cfg.failures:
            self._open(h, now)

    @staticmethod
    def _open(h: DeploymentHealth, now: float) -> None:
        h.state, h.opened_at, h.probe_at = OPEN, now, None
        h.slow.clear()

    def snapshot(self) -> dict[str, dict]:
        ms = lambda s: None if s is None else round(s * 1000, 1)  # noqa: E731
        return {d: {"state": h.state, "calls": h.calls, "failures": h.failures,
                    "error_rate": round(h.error_rate, 4), "latency_ms": ms(h.latency_s), "ttft_ms": ms(h.ttft_s)}
                for d, h in self.deps.items()}


class Guard:
    """One route's view for the fallback loop: deadlines per deployment id, reports to health + stats,
    and the route's hedging delay. `deadlines[dep_id] = (ttft, total)` in seconds (None: no SLA)."""

    __slots__ = ("health", "deadlines", "stats", "hedge_delay")

    def __init__(self, health: Health, deadlines: Mapping[str, tuple[float | None, float | None]],
                 stats=None, hedge_delay: float | None = None):
        self.health, self.deadlines, self.stats, self.hedge_delay = health, deadlines, stats, hedge_delay

    def deadline(self, dep_id: str, stream: bool) -> float | None:
        d = self.deadlines.get(dep_id)
        return None if d is None else d[0 if stream else 1]

    def closed(self, dep_id: str) -> bool:
        h = self.health.deps.get(dep_id)
        return h is None or h.state == CLOSED

    def record(self, dep_id: str, ok: bool, seconds: float, stream: bool) -> None:
        self.health.record(dep_id, ok, seconds, stream)

    def sla_missed(self, dep_id: str) -> None:
        if self.stats is not None:
            self.stats.sla_missed(dep_id)
