"""The ledger's contract: one `Record` per request, a `LedgerStore` per database, and the batched writer.

The request path only ever calls `BatchWriter.submit(record)`: an O(1) append to a deque. A background
thread drains the deque in batches into the store, so neither SQL nor disk I/O ever runs on the event loop.
When the store fails, the batch is kept and retried with backoff; `close()` flushes what is queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, Protocol, Sequence

log = logging.getLogger("hedgeway.ledger")


@dataclass(slots=True)
class Record:
    """One request as the ledger stores it. `ts` is UTC epoch seconds; `cost` is USD, exact."""

    request_id: str
    ts: float
    endpoint: str  # "chat" | "embeddings" | "messages"
    model_name: str  # the logical name the client asked for
    deployment: str | None  # the deployment that answered (None when nothing answered)
    provider: str | None
    status: int  # HTTP status returned to the client
    key_id: str | None = None
    team: str | None = None
    error_type: str | None = None
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost: Decimal = Decimal(0)
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    overhead_ms: float = 0.0
    attempts: int = 1
    route: str | None = None  # why this deployment (strategy, fallbacks taken), free text / JSON
    cache: str | None = None  # cache outcome, when a cache is in front
    saved: Decimal = Decimal(0)  # USD not spent because the cache answered (the original answer's cost)


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Record))


class LedgerStore(Protocol):
    """A database the ledger writes to. Methods are synchronous: they run on the writer thread or CLI."""

    def migrate(self) -> None:
        """Apply pending migrations (idempotent)."""

    def write(self, records: Sequence[Record]) -> None:
        """Insert records in one transaction; raise on failure (the writer retries)."""

    def spend(self, since: float | None = None, group_by: Sequence[str] = ("day",)) -> list[dict[str, Any]]:
        """Aggregate rows with ts >= since, grouped by any of day, model_name, deployment, key_id, team.

        Each row: the group columns plus requests, errors, prompt_tokens, completion_tokens,
        cost (Decimal), latency_p50_ms (None if not computed by the backend)."""

    def records(self, since: float | None = None) -> list[Record]:
        """Rows with ts >= since, oldest first (for planners and tests)."""

    def ping(self) -> bool:
        """True when the database answers."""

    def close(self) -> None: ...


class BatchWriter:
    """Queues records and writes them to a store in batches from a daemon thread."""

    def __init__(self, store: LedgerStore, *, batch_size: int = 100, flush_interval: float = 0.02,
                 max_backoff: float = 5.0):
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.written = 0
        self.failures = 0
        self.healthy = True  # the last write attempt succeeded
        self._queue: deque[Record] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="hedgeway-ledger", daemon=True)
        self._thread.start()

    def submit(self, record: Record) -> None:
        self._queue.append(record)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _take(self) -> list[Record]:
        batch = []
        q = self._queue
        while q and len(batch) < self.batch_size:
            batch.append(q.popleft())
        return batch

    def _run(self) -> None:
        backoff = self.flush_interval
        batch: list[Record] = []
        while True:
            if not batch:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                batch = self._take()
            if not batch:
                if self._stop:
                    return
                continue
            try:
                self.store.write(batch)
            except Exception as exc:  # keep the batch; retry with backoff
                self.failures += 1
                self.healthy = False
                log.error("ledger write of %d records failed (%s); retrying", len(batch), type(exc).__name__)
                if self._stop and backoff >= self.max_backoff:
                    log.error("ledger: giving up on %d records at shutdown", len(batch) + len(self._queue))
                    return
                time.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.written += len(batch)
            self.healthy = True
            backoff = self.flush_interval
            batch = self._take() if len(self._queue) >= self.batch_size or self._stop else []

    def close(self, timeout: float = 30.0) -> None:
        """Flush everything queued, then stop the thread and close the store."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        self.store.close()
