"""Budget alerts: a log line and a webhook POST when a budget's settled spend crosses a threshold.

The store decides *whether* an alert fires (once per budget, period and threshold; with Redis once across
all replicas, by SET NX). `Alerter.fire` only logs and queues: one background task POSTs the JSON
payload (or Slack's `{"text": …}`), retrying non-2xx answers and connection failures with exponential
back-off, so a slow or dead webhook never touches a request. Delivery is at most `retries + 1` attempts.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from urllib.parse import urlsplit

import orjson

from hedgeway.limits.config import AlertsIn
from hedgeway.limits.estimate import fmt_usd
from hedgeway.upstream import Pool

log = logging.getLogger("hedgeway.limits")
QUEUE_MAX = 1000


def payload(scope: str, period: str, threshold: float, spent: Decimal, limit: Decimal, start: int,
            resets: str, fmt: str) -> dict:
    pct = int(round(threshold * 100))
    text = (f"Hedgeway budget alert: {scope} {period} budget at {pct}% "
            f"({fmt_usd(spent)} of {fmt_usd(limit)} spent; resets {resets})")
    if fmt == "slack":
        return {"text": text}
    return {"type": "budget_alert", "scope": scope, "period": period, "threshold": threshold,
            "spent_usd": str(spent), "limit_usd": str(limit), "period_start": start, "resets_at": resets,
            "text": text}


class Alerter:
    def __init__(self, cfg: AlertsIn):
        self.cfg = cfg
        self.thresholds = list(cfg.thresholds)
        self.fired = 0
        self.delivered = 0
        self.failed = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._pool: Pool | None = None
        self._path = "/"
        if cfg.webhook:
            parts = urlsplit(cfg.webhook)
            self._pool = Pool(f"{parts.scheme}://{parts.netloc}", name="alerts-webhook")
            self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def fire(self, event: dict) -> None:
        """Log the alert and queue its webhook delivery. Never blocks, never raises."""
        self.fired += 1
        log.warning("budget alert: %s", event["text"])
        if self._pool is None:
            return
        if self._queue is None:
            self._queue = asyncio.Queue(QUEUE_MAX)
            self._task = asyncio.get_running_loop().create_task(self._deliver())
        try:
            self._queue.put_nowait(orjson.dumps(event))
        except asyncio.QueueFull:
            self.failed += 1
            log.error("budget alert webhook queue full; alert dropped")

    async def _post(self, body: bytes) -> int:
        resp = await self._pool.request("POST", self._path, b"Content-Type: application/json\r\n", body,
                                        self.cfg.timeout, self.cfg.timeout)
        await resp.read()
        return resp.status

    async def _deliver(self) -> None:
        while True:
            body = await self._queue.get()
            delay = self.cfg.backoff
            for attempt in range(self.cfg.retries + 1):
                try:
                    status = await self._post(body)
                    if 200 <= status < 300:
                        self.delivered += 1
                        break
                    why = f"HTTP {status}"
                except Exception as exc:  # noqa: BLE001 - the sender must outlive any failure
                    why = type(exc).__name__
                if attempt == self.cfg.retries:
                    self.failed += 1
                    log.error("budget alert webhook failed after %d attempts (%s)", attempt + 1, why)
                    break
                await asyncio.sleep(delay)
                delay *= 2
            self._queue.task_done()

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for queued deliveries, then stop the sender."""
        if self._queue is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except asyncio.TimeoutError:
                pass
        if self._task is not None:
            self._task.cancel()
        if self._pool is not None:
            self._pool.close()
