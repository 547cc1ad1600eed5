"""PostgreSQL ledger store (psycopg 3, sync API): exact NUMERIC costs, optional schema, reconnects.

The connection runs in autocommit mode; every write and migration opens an explicit transaction. When the
connection breaks (server restart, idle timeout, failover), the failing call raises and the next call
reconnects: writes are retried by the BatchWriter, reads (spend, records, ping) are retried once here.
"""

from __future__ import annotations

import re
import threading
from typing import Any, Callable, Sequence
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from hedgeway.errors import ConfigError
from hedgeway.ledger import migrations, redact_url
from hedgeway.ledger.base import Record
from hedgeway.ledger.query import COLUMNS, ERRORS, ESTIMATED, check_group_by, record_values, spend_rows

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DAY = "to_char(to_timestamp(ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
# A batch is COPYed into a per-connection staging table, then moved with one INSERT … SELECT: a third of
# executemany's client CPU per row at the writer's batch sizes (bench/ledger_copy.py), and the writer thread
# shares the GIL with the event loop. ON CONFLICT: a retried or replayed (spooled) batch whose commit already
# landed inserts nothing twice.
_STAGE = (f"CREATE TEMP TABLE IF NOT EXISTS requests_in ON COMMIT DELETE ROWS AS "
          f"SELECT {COLUMNS} FROM requests WITH NO DATA")
_COPY = f"COPY requests_in ({COLUMNS}) FROM STDIN"
_COPY_DIRECT = f"COPY requests ({COLUMNS}) FROM STDIN"
_MERGE = f"INSERT INTO requests ({COLUMNS}) SELECT {COLUMNS} FROM requests_in ON CONFLICT (request_id) DO NOTHING"


def parse_url(url: str) -> tuple[str, str | None, list[str]]:
    """(libpq conninfo without our `schema` parameter, schema or None, secrets to scrub from messages)."""
    try:
        parts = urlsplit(url)
        secrets = [unquote(parts.password)] if parts.password else []
    except ValueError as exc:
        raise ConfigError("ledger.url", f"invalid PostgreSQL URL ({exc})") from None
    query, schema = [], None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "schema":
            schema = value
        else:
            if key == "password" and value:
                secrets.append(value)
            query.append((key, value))
    if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError("ledger.url", f"schema must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, "
                                        f"at most 63 characters), got {schema!r}")
    # quote, not quote_plus: libpq does not read '+' as a space (options=-c%20statement_timeout%3D5000)
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote))), schema, secrets


class PostgresStore:
    """A LedgerStore on PostgreSQL. One connection, serialized by a lock (the writer thread is the only
    steady user). The constructor connects once so a bad URL fails at startup, as a ConfigError."""

    dialect = "postgresql"

    def __init__(self, url: str):
        self._conninfo, self.schema, self._secrets = parse_url(url)
        self.safe_url = redact_url(url)
        self._params = dict(parse_qsl(urlsplit(url).query))
        self._lock = threading.Lock()
        self._conn: psycopg.Connection | None = None
        self._staged: psycopg.Connection | None = None  # the connection whose staging table exists
        self._closed = False
        try:
            with self._lock:
                self._connection()
        except psycopg.Error as exc:
            raise ConfigError("ledger.url", f"cannot connect to {self.safe_url}: {self._scrub(exc)}") from None

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc).strip()
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _connection(self) -> psycopg.Connection:
        """The live connection, reconnecting if there is none or it broke. Caller holds the lock."""
        if self._closed:
            raise psycopg.InterfaceError("the ledger store is closed")
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        extra: dict[str, Any] = {"autocommit": True}
        # Defaults only: anything the URL sets wins.
        if "connect_timeout" not in self._params:
            extra["connect_timeout"] = 5
        if "application_name" not in self._params:
            extra["application_name"] = "hedgeway-ledger"
        conn = psycopg.connect(self._conninfo, **extra)
        try:
            if self.schema:
                self._use_schema(conn, self.schema)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    @staticmethod
    def _use_schema(conn: psycopg.Connection, schema: str) -> None:
        ident = sql.Identifier(schema)
        # Look before creating: CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
        # schema exists, which a least-privilege ledger role may lack.
        exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident))
            except psycopg.errors.UniqueViolation:
                pass  # another worker created it between our look and our create
        # Only our schema: the ledger's tables must never land in (or be read from) `public` by accident.
        conn.execute(sql.SQL("SET search_path TO {}").format(ident))

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # already dead; nothing to release
                pass
            self._conn = None

    def _run(self, fn: Callable[[psycopg.Connection], Any], *, retry: bool) -> Any:
        """fn(connection) under the lock. A broken connection is dropped (the next call reconnects);
        with retry=True (idempotent reads only) the call is tried once more on a fresh connection."""
        with self._lock:
            for attempt in range(2 if retry else 1):
                conn = self._connection()
                try:
                    return fn(conn)
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    if not (conn.closed or conn.broken):
                        raise  # e.g. a cancelled statement: the connection is fine, retrying won't help
                    self._drop()
                    if attempt == 1 or not retry:
                        raise

    def migrate(self) -> None:
        """Apply pending migrations (idempotent). An advisory lock keeps concurrent workers apart."""
        def go(conn: psycopg.Connection) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                             (f"hedgeway-ledger-migrate:{self.schema or ''}",))
                migrations.apply(conn.execute, self.dialect)
        self._run(go, retry=True)  # safe: the whole migration is one transaction

    def write(self, records: Sequence[Record]) -> None:
        """Insert all records in one transaction; raise (inserting none) on failure."""
        if records:
            self.write_rows([record_values(r) for r in records])

    def write_rows(self, rows: list[list]) -> None:
        """`write` for rows already in RECORD_FIELDS order (query.record_values): `copy_rows`, the cheapest
        write for both ends; a batch holding a request_id already stored (a spool replay, a retry after a
        commit whose reply was lost) fails whole on the unique index and then goes through `merge_rows`."""
        try:
            self.copy_rows(rows)
        except psycopg.errors.UniqueViolation:
            self.merge_rows(rows)

    def copy_rows(self, rows: list[list]) -> None:
        """One COPY straight into the table on the autocommit connection (its own transaction)."""
        def go(conn: psycopg.Connection) -> None:
            with conn.cursor() as cur, cur.copy(_COPY_DIRECT) as copy:
                for row in rows:
                    copy.write_row(row)
        self._run(go, retry=False)  # the BatchWriter retries; retrying here too could double-insert

    def merge_rows(self, rows: list[list]) -> None:
        """COPY into the staging table, then INSERT … ON CONFLICT DO NOTHING: rows already stored are skipped."""
        def go(conn: psycopg.Connection) -> None:
            if self._staged is not conn:  # the staging table lives as long as its connection
                conn.execute(_STAGE)
                self._staged = conn
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(_COPY) as copy:
                    for row in rows:
                        copy.write_row(row)
                cur.execute(_MERGE)
        self._run(go, retry=False)

    def spend(self, since: float | None = None, group_by: Sequence[str] = ("day",)) -> list[dict[str, Any]]:
        """See LedgerStore.spend (same rows and order as SQLiteStore.spend; errors and estimated: query.py's
        ERRORS, ESTIMATED); cost is summed as NUMERIC (exact) and returned as Decimal; latency_p50_ms is
        percentile_cont(0.5) over all rows in the group."""
        keys = check_group_by(group_by)
        exprs = [_DAY if k == "day" else k for k in keys]
        select = [f"{e} AS {k}" for e, k in zip(exprs, keys)]
        select += ["count(*)", ERRORS, "coalesce(sum(prompt_tokens), 0)", "coalesce(sum(completion_tokens), 0)",
                   "coalesce(sum(cost), 0)", "percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms)", ESTIMATED]
        query = f"SELECT {', '.join(select)} FROM requests"
        params: tuple = ()
        if since is not None:
            query += " WHERE ts >= %s"
            params = (since,)
        if keys:
            query += " GROUP BY " + ", ".join(exprs)
        fetched = self._run(lambda conn: conn.execute(query, params).fetchall(), retry=True)
        return spend_rows(fetched, keys)

    def records(self, since: float | None = None) -> list[Record]:
        """Rows with ts >= since, oldest first (insertion order among equal ts)."""
        query = f"SELECT {COLUMNS} FROM requests"
        params: tuple = ()
        if since is not None:
            query += " WHERE ts >= %s"
            params = (since,)
        query += " ORDER BY ts, id"
        rows = self._run(lambda conn: conn.execute(query, params).fetchall(), retry=True)
        return [Record(*row) for row in rows]

    def ping(self) -> bool:
        try:
            return self._run(lambda conn: conn.execute("SELECT 1").fetchone() == (1,), retry=True)
        except psycopg.Error:
            return False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
