"""The ledger's contract: one `Record` per request, a `LedgerStore` per database, and the batched writer.

The request path only ever calls `BatchWriter.submit(record)`: an O(1) append to a deque. A background
thread drains the deque in batches into the store, so neither SQL nor disk I/O ever runs on the event loop.
When the store fails, batches go to the local spool (fsynced) and are replayed once it is back; without a
spool they are kept in memory and retried with backoff. `close()` flushes what is queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:
    from hedgeway.ledger.spool import Spool

log = logging.getLogger("hedgeway.ledger")


@dataclass(slots=True)
class Record:
    """One request as the ledger stores it. `ts` is UTC epoch seconds; `cost` is USD, exact."""

    request_id: str
    ts: float
    endpoint: str  # "chat" | "embeddings" | "messages" | "responses"
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
    prompt: str | None = None  # the request's messages (JSON), only when ledger.log_prompts is on
    usage_estimated: bool = False  # tokens counted by Hedgeway (tokens.py): the upstream reported none


RECORD_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Record))


class LedgerStore(Protocol):
    """A database the ledger writes to. Methods are synchronous: they run on the writer thread or CLI."""

    def migrate(self) -> None:
        """Apply pending migrations (idempotent)."""

    def write(self, records: Sequence[Record]) -> None:
        """Insert records in one transaction; raise on failure (the writer retries)."""

    def spend(self, since: float | None = None, group_by: Sequence[str] = ("day",)) -> list[dict[str, Any]]:
        """Aggregate rows with ts >= since, grouped by any of day, model_name, deployment, key_id, team.

        Each row: the group columns plus requests, errors (status >= 400, or a stream broken after its 200),
        prompt_tokens, completion_tokens, cost (Decimal), latency_p50_ms (None if not computed by the
        backend), estimated (rows whose usage Hedgeway counted because the upstream reported none)."""

    def records(self, since: float | None = None) -> list[Record]:
        """Rows with ts >= since, oldest first (for planners and tests)."""

    def ping(self) -> bool:
        """True when the database answers."""

    def close(self) -> None: ...


class BatchWriter:
    """Queues records and writes them to a store in batches from a daemon thread.

    With a `spool` (ledger/spool.py), a batch the store rejects is appended to the local spool (fsynced)
    instead of waiting in memory, and so is every later batch until the spool has been replayed into the
    store (tried after the failure with back-off, oldest first): nothing held in memory is lost to a
    database outage, a SIGTERM during one, or a writer stuck on a hung database (`close()` spools what
    the thread could not write). Replays may repeat rows already stored; the stores ignore a repeated
    request_id, so each record lands exactly once. Without a spool, a failed batch is kept in memory and
    retried with back-off, as before.

    `healthy` means "records are safe": the last store write succeeded, or the failed batches went to a
    spool that still has room. `/readyz` reads it: while spooling, the instance keeps serving.
    """

    def __init__(self, store: LedgerStore, *, batch_size: int = 100, flush_interval: float = 0.02,
                 max_backoff: float = 5.0, spool: "Spool | None" = None):
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.spool = spool
        self.written = 0
        self.failures = 0
        self.healthy = True
        self.store_ok = True  # the last store write (or replay) succeeded
        self._queue: deque[Record] = deque()
        self._wake = threading.Event()
        self._stop = False
        self._inflight: list[Record] = []  # the batch the thread is writing (for close() to rescue)
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

    def _write(self, batch: list[Record]) -> bool:
        self._inflight = batch
        try:
            self.store.write(batch)
        except Exception as exc:
            self.failures += 1
            self.store_ok = False
            log.error("ledger write of %d records failed (%s)", len(batch), type(exc).__name__)
            return False
        finally:
            self._inflight = []
        self.written += len(batch)
        self.store_ok = True
        return True

    def _replay(self) -> bool:
        """Feed the spool back to the store; True when it is empty afterwards."""
        try:
            n = self.spool.replay(self._write_or_raise, self.batch_size)
        except Exception:  # counted and logged by _write_or_raise; the spool is unchanged
            return False
        if n:
            log.warning("ledger: replayed %d spooled records into the store", n)
        return True

    def _write_or_raise(self, batch: list[Record]) -> None:
        if not self._write(batch):
            raise RuntimeError("store write failed")

    def _run(self) -> None:
        backoff = self.flush_interval
        retry_at = 0.0  # monotonic time of the next replay attempt after a failure
        spool = self.spool
        batch: list[Record] = []
        last_chance = True  # one replay attempt at shutdown even while backing off
        while True:
            if not batch and len(self._queue) < self.batch_size and not self._stop:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            stopping = self._stop
            if spool is not None and spool.pending and (time.monotonic() >= retry_at
                                                        or (stopping and last_chance)):
                last_chance = not stopping
                if self._replay():
                    backoff = self.flush_interval
                    retry_at = 0.0
                else:
                    retry_at = time.monotonic() + backoff
                    backoff = min(backoff * 2, self.max_backoff)
            batch = batch or self._take()
            if not batch:
                if stopping:
                    return
                continue
            # While anything is spooled the store is down (or not yet caught up): spool this batch too,
            # so the order is kept and a dead database costs one attempt per back-off, not per batch.
            if not (spool is not None and spool.pending) and self._write(batch):
                self.healthy = True
                backoff = self.flush_interval
                batch = []
                continue
            if spool is not None and spool.append(batch):
                self.healthy = True  # safe on disk
                retry_at = max(retry_at, time.monotonic() + backoff)
                batch = []
                continue
            self.healthy = False  # in memory only: no spool, or it is full
            if stopping and (spool is not None or backoff >= self.max_backoff):
                log.error("ledger: giving up on %d records at shutdown", len(batch) + len(self._queue))
                return
            time.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)

    def close(self, timeout: float = 30.0) -> None:
        """Flush everything queued (to the store, else to the spool), then stop the thread and close the
        store. If the thread is still stuck after `timeout` (a hung database), what it holds and what is
        queued go to the spool from here (a batch that lands after all is harmless: replay ignores it)."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        stuck = self._thread.is_alive()
        if stuck and self.spool is not None:
            rest = list(self._inflight) + list(self._queue)
            # The stuck thread may hold the spool (replaying): then a sibling file takes the records.
            if rest and (self.spool.append(rest, timeout=1.0) or self.spool.sibling().append(rest)):
                log.error("ledger: the store hung at shutdown; spooled %d records", len(rest))
        if self.spool is not None:
            self.spool.close()
        if not stuck:  # a stuck thread holds the store's lock: closing would hang too
            self.store.close()
