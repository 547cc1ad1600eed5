"""Schema migrations: an append-only list of named steps per dialect.

A `_migrations` table records the name of every step applied. `apply` runs, in list order, each step whose
name is not recorded yet, and records it in the same transaction, so a step is applied exactly once.

The steps live in sqlite.py and postgres.py, one module per dialect. Rules for editing them:
  * never edit or reorder a released step (databases in the field have already applied it);
  * change the schema only by appending a new step, to BOTH dialects, with the same name;
  * the `requests` table keeps one column per `Record` field (tests check this against RECORD_FIELDS).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from hedgeway.ledger.migrations.postgres import POSTGRES
from hedgeway.ledger.migrations.sqlite import SQLITE
from hedgeway.ledger.migrations.step import Step

__all__ = ["POSTGRES", "SQLITE", "STEPS", "Step", "apply"]


STEPS: dict[str, list[Step]] = {"sqlite": SQLITE, "postgresql": POSTGRES}

_BOOKKEEPING = {
    "sqlite": ("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)",
               "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)"),
    "postgresql": ("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, "
                   "applied_at DOUBLE PRECISION NOT NULL)",
                   "INSERT INTO _migrations (name, applied_at) VALUES (%s, %s)"),
}


def apply(execute: Callable[..., Any], dialect: str) -> list[str]:
    """Apply the pending steps of `dialect` through `execute(sql, params=())` (a DB-API `conn.execute`).

    The caller must hold a write transaction and whatever lock keeps two migrators apart (SQLite:
    BEGIN IMMEDIATE; PostgreSQL: an advisory lock), and commit afterwards. Returns the names applied."""
    create, record = _BOOKKEEPING[dialect]
    execute(create)
    applied = {row[0] for row in execute("SELECT name FROM _migrations").fetchall()}
    done = []
    for step in STEPS[dialect]:
        if step.name in applied:
            continue
        for statement in step.statements:
            execute(statement)
        execute(record, (step.name, time.time()))
        done.append(step.name)
    return done
