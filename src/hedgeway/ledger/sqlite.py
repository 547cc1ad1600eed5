"""SQLite ledger store: one file, WAL mode, exact Decimal costs.

Costs are stored as TEXT (the exact Decimal string) because SQLite has no decimal type and REAL would
round. `spend` sums them with a Python aggregate (`dsum`) that adds Decimals, never floats.

This module also holds what both backends share: the `spend` group-by keys and the row -> Record mapping.
"""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from decimal import Context, Decimal
from pathlib import Path
from typing import Any, Sequence

from hedgeway.ledger import migrations
from hedgeway.ledger.base import RECORD_FIELDS, Record
from hedgeway.ledger.query import COLUMNS, ERRORS, ESTIMATED, check_group_by, record_values, spend_rows

# `spend` group-by key -> SQL expression, per dialect. Only these keys are accepted, so the expressions
# below are the only SQL ever interpolated (values always go through placeholders).
_DAY_SQLITE = "strftime('%Y-%m-%d', ts, 'unixepoch')"  # 'unixepoch' without 'localtime' is UTC

_WIDE = Context(prec=60)  # wide enough that no realistic sum of costs is ever rounded


# ON CONFLICT: a retried or replayed (spooled) batch whose commit already landed inserts nothing twice.
_INSERT = (f"INSERT INTO requests ({COLUMNS}) VALUES ({', '.join('?' * len(RECORD_FIELDS))}) "
           "ON CONFLICT (request_id) DO NOTHING")


def _fixed(cost: Decimal) -> str:
    return format(cost, "f")  # exact fixed-point text: never exponent notation, never float


class _DecimalSum:
    """SQLite aggregate `dsum(text)`: the exact Decimal sum of its inputs, as a fixed-point string."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: Any) -> None:
        if value is not None:
            self.total = _WIDE.add(self.total, Decimal(str(value)))

    def finalize(self) -> str:
        return format(self.total, "f")


class _Median:
    """SQLite aggregate `median(x)`: interpolated median, as PostgreSQL's percentile_cont(0.5) computes it."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def step(self, value: Any) -> None:
        if value is not None:
            self.values.append(float(value))

    def finalize(self) -> float | None:
        return statistics.median(self.values) if self.values else None


def connect(path: str) -> sqlite3.Connection:
    """A connection as every Hedgeway SQLite user wants it: usable from any thread (callers serialise
    with a lock), no implicit transactions, a 5 s busy timeout, and the file in WAL mode (readers never
    block the writer). SQLite answers "database is locked" at once, without its busy handler, while another
    connection creates the file or switches it to WAL too: the switch is retried for up to 5 s."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    deadline = time.monotonic() + 5.0
    while path != ":memory:" and conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            conn.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    return conn


class SQLiteStore:
    """A LedgerStore on one SQLite file (or ":memory:"). Safe to call from several threads: one connection,
    serialized by a lock. Several processes may share the file (WAL + busy_timeout)."""

    dialect = "sqlite"

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = connect(self.path)  # no implicit transactions: every write opens its own explicitly
        self._conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a power cut loses the last ms only
        self._conn.create_aggregate("dsum", 1, _DecimalSum)
        self._conn.create_aggregate("median", 1, _Median)

    def _transaction(self, fn) -> Any:
        # BEGIN IMMEDIATE takes the write lock up front, so two processes never deadlock upgrading a read.
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def migrate(self) -> None:
        """Apply pending migrations (idempotent; concurrent callers are serialized by the write lock)."""
        self._transaction(lambda conn: migrations.apply(conn.execute, self.dialect))

    def write(self, records: Sequence[Record]) -> None:
        """Insert all records in one transaction; raise (inserting none) on failure."""
        if not records:
            return
        rows = [record_values(r, _fixed) for r in records]
        self._transaction(lambda conn: conn.executemany(_INSERT, rows))

    def spend(self, since: float | None = None, group_by: Sequence[str] = ("day",)) -> list[dict[str, Any]]:
        """See LedgerStore.spend (errors and estimated: query.py's ERRORS, ESTIMATED); cost is an exact Decimal;
        latency_p50_ms is the interpolated median of all rows in the group. Rows are ordered by group
        values, NULLs first."""
        keys = check_group_by(group_by)
        exprs = [_DAY_SQLITE if k == "day" else k for k in keys]
        select = [f"{e} AS {k}" for e, k in zip(exprs, keys)]
        select += ["count(*)", ERRORS, "coalesce(sum(prompt_tokens), 0)", "coalesce(sum(completion_tokens), 0)",
                   "dsum(cost)", "median(latency_ms)", ESTIMATED]
        sql = f"SELECT {', '.join(select)} FROM requests"
        params: tuple = ()
        if since is not None:
            sql += " WHERE ts >= ?"
            params = (since,)
        if keys:
            sql += " GROUP BY " + ", ".join(exprs)
        with self._lock:
            fetched = self._conn.execute(sql, params).fetchall()
        return spend_rows(fetched, keys)

    def records(self, since: float | None = None) -> list[Record]:
        """Rows with ts >= since, oldest first (insertion order among equal ts)."""
        sql = f"SELECT {COLUMNS} FROM requests"
        params: tuple = ()
        if since is not None:
            sql += " WHERE ts >= ?"
            params = (since,)
        sql += " ORDER BY ts, id"
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        out = []
        for row in rows:
            rec = Record(*row)
            rec.cost = Decimal(rec.cost)
            rec.saved = Decimal(rec.saved)
            rec.stream = bool(rec.stream)
            rec.usage_estimated = bool(rec.usage_estimated)
            out.append(rec)
        return out

    def ping(self) -> bool:
        try:
            with self._lock:
                return self._conn.execute("SELECT 1").fetchone() == (1,)
        except sqlite3.Error:
            return False

    def close(self) -> None:
        with self._lock:
            self._conn.close()
