"""The Responses API's store (OpenAI's `store`), in the ledger database (table of migration 011), so that
`previous_response_id` and `GET /v1/responses/{id}` work on every replica.

    store = ResponseStore(url, settings)      # its own connection (hedgeway.keys.db), opened on first use
    store.put(tenant, response, items, chain)  # after an answer; keeps the whole conversation as long as it
    store.get(tenant, id) -> dict | None      # the Response object
    store.chain(tenant, id) -> list[Turn] | None   # the conversation ending with `id`, oldest first
    store.delete(tenant, id) -> bool

A row is a response's own input items and its Response object (output included); a conversation is the
chain of `previous_id` links, read in one recursive query. Every read filters by tenant and expiry: another
tenant's id, a deleted one and an expired one all read as absent. Rows expire `retention_days` after the
newest response of their conversation (storing a turn extends its ancestors); expired rows are deleted by
the replica that next stores a response, at most once a minute. Deleting a response removes its turns
from any conversation continued after it. Methods are synchronous: call them off the event loop.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import orjson
from pydantic import Field

from hedgeway.strict import Strict

DAY = 86400.0
PURGE_EVERY = 60.0  # seconds between deletions of expired rows, per replica
MAX_TURNS = 1000  # the longest conversation read back (a guard against a cycle, which ids make impossible)


class ResponsesIn(Strict):
    """`responses:` in the config."""

    # Keep responses created with `store` (the default, as OpenAI's) and their input. false: keep nothing;
    # `store: true` and `previous_response_id` are then 400s.
    store: bool = True
    retention_days: float = Field(30.0, gt=0)


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
        self._lock = threading.Lock()
        self._purged = 0.0

    def _database(self):
        with self._lock:
            if self._db is None:
                from hedgeway.keys.db import open_db

                db = open_db(self.url)
                db.migrate()  # idempotent; a fresh database may see the store first
                self._db = db
            return self._db

    def put(self, tenant: str, response: dict[str, Any], items: list[dict[str, Any]], chain: list[str]) -> None:
        """Store `response` (its `id`, `previous_response_id`) with its own input `items`; `chain` are the ids
        of the conversation before it, whose expiry moves with it."""
        now = self.clock()
        expires = now + self.ttl
        purge = now - self._purged >= PURGE_EVERY

        def go(q):
            q("INSERT INTO response_store (id, tenant, previous_id, created_at, expires_at, input, response) "
              "VALUES (?, ?, ?, ?, ?, ?, ?)", (response["id"], tenant, response.get("previous_response_id"), now,
                                               expires, orjson.dumps(items).decode(), orjson.dumps(response).decode()))
            if chain:
                marks = ", ".join("?" * len(chain))
                q(f"UPDATE response_store SET expires_at = ? WHERE tenant = ? AND id IN ({marks})",
                  (expires, tenant, *chain))
            if purge:
                q("DELETE FROM response_store WHERE expires_at <= ?", (now,))
        self._database().write(go)
        if purge:
            self._purged = now

    def get(self, tenant: str, response_id: str) -> dict[str, Any] | None:
        row = self._database().read(lambda q: q(
            "SELECT response FROM response_store WHERE id = ? AND tenant = ? AND expires_at > ?",
            (response_id, tenant, self.clock())).fetchone())
        return orjson.loads(row[0]) if row else None

    def chain(self, tenant: str, response_id: str) -> list[Turn] | None:
        """The conversation ending with `response_id`, oldest turn first; None when that id is absent."""
        now = self.clock()
        rows = self._database().read(lambda q: q(_CHAIN, (response_id, tenant, now, tenant, now, MAX_TURNS))
                                     .fetchall())
        return [Turn(r[0], orjson.loads(r[1]), orjson.loads(r[2])) for r in rows] or None

    def delete(self, tenant: str, response_id: str) -> bool:
        return self._database().write(lambda q: q(
            "DELETE FROM response_store WHERE id = ? AND tenant = ? AND expires_at > ?",
            (response_id, tenant, self.clock())).rowcount) > 0

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
