"""The Responses API's store (OpenAI's `store`), in the ledger database (table of migration 011), so that
`previous_response_id` and `GET /v1/responses/{id}` work on every replica.

    store = ResponseStore(url, settings)      # its own connection (hedgeway.keys.db), opened on first use
    store.put(tenant, response, items, chain) -> bool   # queued, O(1); False when the queue is full
    store.get(tenant, id) -> dict | None      # the Response object
    store.chain(tenant, id) -> list[Turn] | None   # the conversation ending with `id`, oldest first
    store.delete(tenant, id) -> bool
    store.flush(); store.close()

A row is a response's own input items and its Response object (output included); a conversation is the
chain of `previous_id` links, read in one recursive query. Every read filters by tenant and expiry: another
tenant's id, a deleted one and an expired one all read as absent. Rows expire `retention_days` after the
newest response of their conversation (storing a turn extends its ancestors); expired rows are deleted by
the replica that next stores a response, at most once a minute. Deleting a response removes its turns
from any conversation continued after it.

Writes leave the request path: `put` queues the row and a writer thread commits queued rows in batches (one
transaction, a few milliseconds after the answer left; retried with back-off while the database fails, up to
MAX_QUEUED rows, then `put` says False). Until its commit, a row is read from the queue by this replica, so
a client always reads its own writes here; another replica sees it once committed (the HTTP layer looks
again for a short while before calling an id unknown). `get`, `chain` and `delete` do database I/O: call
them off the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from pydantic import Field

from hedgeway.strict import Strict

log = logging.getLogger("hedgeway.responses")
DAY = 86400.0
PURGE_EVERY = 60.0  # seconds between deletions of expired rows, per replica
MAX_TURNS = 1000  # the longest conversation read back (a guard against a cycle, which ids make impossible)
GATHER = 0.005  # seconds the writer waits after a row is queued before writing (batching, off the answer's path)
MAX_QUEUED = 10_000  # rows waiting for a database that fails; beyond, responses are answered but not stored


class ResponsesIn(Strict):
    """`responses:` in the config."""

    # Keep responses created with `store` (the default, as OpenAI's) and their input. false: keep nothing;
    # `store: true` and `previous_response_id` are then 400s.
    store: bool = True
    retention_days: float = Field(30.0, gt=0)


@dataclass(frozen=True, slots=True)
class _Row:
    """A response as stored, queued until committed."""

    id: str
    tenant: str
    previous_id: str | None
    created_at: float
    expires_at: float
    input: list[dict[str, Any]]
    response: dict[str, Any]
    chain: list[str]  # the earlier turns' ids, whose expiry moves to this row's


@dataclass(frozen=True, slots=True)
class Turn:
    id: str
    input: list[dict[str, Any]]  # the response's own input items
    response: dict[str, Any]  # the Response object


_CHAIN = """WITH RECURSIVE chain(id, prev, depth) AS (
    SELECT id, previous_id, 0 FROM response_store WHERE id = ? AND tenant = ? AND expires_at > ?
    UNION ALL
    SELECT r.id, r.previous_id, c.depth + 1 FROM response_store r JOIN chain c ON r.id = c.prev
    WHERE r.tenant = ? AND r.expires_at > ? AND c.depth < ?
) SELECT r.id, r.input, r.response FROM chain c JOIN response_store r ON r.id = c.id ORDER BY c.depth DESC"""


class ResponseStore:
    def __init__(self, url: str, settings: ResponsesIn, clock: Callable[[], float] = time.time):
        self.url = url
        self.clock = clock  # wall-clock seconds (a test may pass its own)
        self.ttl = settings.retention_days * DAY
        self._db = None
        self._db_lock = threading.Lock()
        self._cond = threading.Condition()
        self._queue: deque[_Row] = deque()
        self._pending: dict[str, _Row] = {}  # queued or being written: what this replica reads before commit
        self._thread: threading.Thread | None = None
        self._stop = False
        self._purged = 0.0

    def _database(self):
        with self._db_lock:
            if self._db is None:
                from hedgeway.keys.db import open_db

                db = open_db(self.url)
                db.migrate()  # idempotent; a fresh database may see the store first
                self._db = db
            return self._db

    # --- writes ---
    def put(self, tenant: str, response: dict[str, Any], items: list[dict[str, Any]], chain: list[str]) -> bool:
        """Queue `response` (its `id`, `previous_response_id`) with its own input `items`; `chain` are the ids
        of the conversation before it, whose expiry moves with it. False: the queue is full (database down)."""
        now = self.clock()
        row = _Row(response["id"], tenant, response.get("previous_response_id"), now, now + self.ttl, items,
                   response, chain)
        with self._cond:
            if len(self._pending) >= MAX_QUEUED or self._stop:
                return False
            self._queue.append(row)
            self._pending[row.id] = row
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hedgeway-responses", daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    def _run(self) -> None:
        backoff = 0.05
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait()
                if not self._queue:
                    return
                stopping = self._stop
            if not stopping:  # let the request that queued the row send its answer first (the GIL, the
                time.sleep(GATHER)  # cores); rows queued meanwhile join the batch
            with self._cond:
                batch = list(self._queue)
                self._queue.clear()
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - kept queued and retried; reads still see the rows here
                log.error("response store: writing %d responses failed (%s); retrying", len(batch), type(exc).__name__)
                with self._cond:
                    self._queue.extendleft(reversed(batch))
                    if self._stop:
                        return
                    self._cond.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.05
            with self._cond:
                for row in batch:
                    if self._pending.get(row.id) is row:
                        del self._pending[row.id]
                self._cond.notify_all()

    def _write(self, batch: list[_Row]) -> None:
        now = self.clock()
        purge = now - self._purged >= PURGE_EVERY

        def go(q):
            for r in batch:
                q("INSERT INTO response_store (id, tenant, previous_id, created_at, expires_at, input, response) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                  (r.id, r.tenant, r.previous_id, r.created_at, r.expires_at, orjson.dumps(r.input).decode(),
                   orjson.dumps(r.response).decode()))
                if r.chain:
                    marks = ", ".join("?" * len(r.chain))
                    q(f"UPDATE response_store SET expires_at = ? WHERE tenant = ? AND id IN ({marks})",
                      (r.expires_at, r.tenant, *r.chain))
            if purge:
                q("DELETE FROM response_store WHERE expires_at <= ?", (now,))
        self._database().write(go)
        if purge:
            self._purged = now

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued row is committed; False if that took longer than `timeout`."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout)

    # --- reads ---
    def _queued(self, tenant: str, response_id: str | None) -> _Row | None:
        with self._cond:
            row = self._pending.get(response_id) if response_id else None
        return row if row is not None and row.tenant == tenant else None  # seconds old: never expired

    def get(self, tenant: str, response_id: str) -> dict[str, Any] | None:
        row = self._queued(tenant, response_id)
        if row is not None:
            return row.response
        found = self._database().read(lambda q: q(
            "SELECT response FROM response_store WHERE id = ? AND tenant = ? AND expires_at > ?",
            (response_id, tenant, self.clock())).fetchone())
        return orjson.loads(found[0]) if found else None

    def chain(self, tenant: str, response_id: str) -> list[Turn] | None:
        """The conversation ending with `response_id`, oldest turn first; None when that id is absent."""
        newest: list[Turn] = []
        while (row := self._queued(tenant, response_id)) is not None and len(newest) < MAX_TURNS:
            newest.append(Turn(row.id, row.input, row.response))
            response_id = row.previous_id
        older: list[Turn] = []
        if response_id and len(newest) < MAX_TURNS:
            now = self.clock()
            rows = self._database().read(lambda q: q(_CHAIN, (response_id, tenant, now, tenant, now, MAX_TURNS))
                                         .fetchall())
            older = [Turn(r[0], orjson.loads(r[1]), orjson.loads(r[2])) for r in rows]
        return older + newest[::-1] or None

    def delete(self, tenant: str, response_id: str) -> bool:
        self.flush()  # a queued row is deleted from the database, once it is there
        return self._database().write(lambda q: q(
            "DELETE FROM response_store WHERE id = ? AND tenant = ? AND expires_at > ?",
            (response_id, tenant, self.clock())).rowcount) > 0

    def close(self) -> None:
        """Commit what is queued (up to 10 s), stop the writer, close the connection."""
        self.flush()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(10)
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None
