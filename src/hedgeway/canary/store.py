"""Canary state in the ledger database, shared by every replica and the CLI (tables of migration 007).

    store = CanaryStore(url)                        # its own connection (hedgeway.keys.db), migrated
    store.create(name, model, candidate, settings)  # InvalidRequest when a live canary has that name
    store.all() -> list[Row]                        # every canary, for the replicas' poll and `status`
    store.transition(row, state, stage, reason)     # the new Row for exactly one caller per (name, seq), else None
    store.report(name, seq, replica, counts)        # this replica's cumulative counts of that stage
    store.totals(name, seq) -> (requests, errors, sla, checked, agreement)   # summed over replicas
    store.events(name) -> list[dict]

A transition is `UPDATE … WHERE name = ? AND seq = ?` plus an event row in one transaction: two replicas
that decide the same promotion at once cannot both apply it, and a human's `rollback` from the CLI wins
over an automatic promotion in flight (whichever commits first bumps `seq`; the other sees 0 rows).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from hedgeway.errors import InvalidRequest
from hedgeway.keys.db import open_db

LIVE = ("running", "paused")  # states in which the canary still takes a share of traffic (paused: frozen)


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    model: str
    candidate: str
    settings: dict[str, Any]  # stages, min_requests, min_seconds, max_error_rate, max_sla_rate
    state: str  # running | paused | promoted | rolled_back
    stage: int  # index into settings["stages"]
    seq: int  # bumped by every transition
    stage_started: float

    @property
    def share(self) -> float:
        """The candidate's share of the model's traffic now (0 once rolled back, 1 once promoted)."""
        if self.state == "rolled_back":
            return 0.0
        if self.state == "promoted":
            return 1.0
        return self.settings["stages"][self.stage] / 100


_COLUMNS = "name, model, candidate, settings, state, stage, seq, stage_started"


def _row(r: tuple) -> Row:
    return Row(r[0], r[1], r[2], orjson.loads(r[3]), r[4], int(r[5]), int(r[6]), float(r[7]))


class CanaryStore:
    def __init__(self, url: str):
        self.db = open_db(url)
        self.db.migrate()

    def create(self, name: str, model: str, candidate: str, settings: dict[str, Any]) -> Row:
        now = time.time()

        def go(q):
            old = q("SELECT state FROM canaries WHERE name = ?", (name,)).fetchone()
            if old is not None and old[0] in LIVE:
                raise InvalidRequest(f"canary {name!r} is {old[0]}; roll it back or promote it first",
                                     code="canary_exists")
            q("DELETE FROM canaries WHERE name = ?", (name,))
            q(f"INSERT INTO canaries ({_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, 'running', 0, 1, ?, ?)",
              (name, model, candidate, orjson.dumps(settings).decode(), now, now))
            q("INSERT INTO canary_events (ts, name, from_state, to_state, stage, share, reason) "
              "VALUES (?, ?, NULL, 'running', 0, ?, 'started')", (now, name, settings["stages"][0] / 100))
            return _row(q(f"SELECT {_COLUMNS} FROM canaries WHERE name = ?", (name,)).fetchone())
        return self.db.write(go)

    def all(self) -> list[Row]:
        return self.db.read(lambda q: [_row(r) for r in q(f"SELECT {_COLUMNS} FROM canaries ORDER BY name")])

    def get(self, name: str) -> Row | None:
        return next((r for r in self.all() if r.name == name), None)

    def transition(self, row: Row, state: str, stage: int, reason: str) -> Row | None:
        now = time.time()
        new = Row(row.name, row.model, row.candidate, row.settings, state, stage, row.seq + 1, now)

        def go(q):
            cur = q("UPDATE canaries SET state = ?, stage = ?, seq = ?, stage_started = ?, updated_at = ? "
                    "WHERE name = ? AND seq = ?", (state, stage, new.seq, now, now, row.name, row.seq))
            if cur.rowcount != 1:
                return None
            q("INSERT INTO canary_events (ts, name, from_state, to_state, stage, share, reason) "
              "VALUES (?, ?, ?, ?, ?, ?, ?)", (now, row.name, row.state, state, stage, new.share, reason))
            q("DELETE FROM canary_counts WHERE name = ? AND seq < ?", (row.name, new.seq))
            return new
        return self.db.write(go)

    def report(self, name: str, seq: int, replica: str, counts: tuple[int, int, int, int, float]) -> None:
        def go(q):
            q("DELETE FROM canary_counts WHERE name = ? AND seq = ? AND replica = ?", (name, seq, replica))
            q("INSERT INTO canary_counts (name, seq, replica, requests, errors, sla, checked, agreement) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (name, seq, replica, *counts))
        self.db.write(go)

    def totals(self, name: str, seq: int) -> tuple[int, int, int, int, float]:
        """(requests, errors, SLA fallbacks, answers compared, sum of their agreement) over replicas."""
        r = self.db.read(lambda q: q("SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(errors), 0), "
                                     "COALESCE(SUM(sla), 0), COALESCE(SUM(checked), 0), "
                                     "COALESCE(SUM(agreement), 0) FROM canary_counts WHERE name = ? AND seq = ?",
                                     (name, seq)).fetchone())
        return int(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4])

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE name = ?", (name,)) if name else ("", ())
        rows = self.db.read(lambda q: q("SELECT ts, name, from_state, to_state, stage, share, reason FROM "
                                        f"canary_events {where} ORDER BY ts", params).fetchall())
        keys = ("ts", "name", "from", "to", "stage", "share", "reason")
        return [dict(zip(keys, r)) for r in rows]

    def close(self) -> None:
        self.db.close()
