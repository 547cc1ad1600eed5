"""The key store's own connection to the ledger database (same URL forms as `hedgeway.ledger`).

One connection per store, serialized by a lock: the ring's poll thread and admin calls (run off the event
loop) are its only users. SQL is written once with `?` placeholders; the PostgreSQL adapter turns them
into `%s`. A broken PostgreSQL connection is dropped and the next call reconnects.

    db.read(fn)    fn(q) in one consistent read snapshot, q(sql, params=()) -> cursor
    db.write(fn)   fn(q) in one write transaction (serialized against other writers)
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

from hedgeway.errors import ConfigError
from hedgeway.ledger import migrations, redact_url, sqlite_path
from hedgeway.ledger.sqlite import connect

T = TypeVar("T")
Query = Callable[..., Any]


class SQLiteDB:
    dialect = "sqlite"

    def __init__(self, url: str):
        path = sqlite_path(url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = connect(path)

    def _tx(self, begin: str, fn: Callable[[Query], T]) -> T:
        with self._lock:
            self._conn.execute(begin)
            try:
                result = fn(self._conn.execute)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
            return result

    def read(self, fn: Callable[[Query], T]) -> T:
        return self._tx("BEGIN", fn)  # a deferred transaction: one WAL snapshot for every statement

    def write(self, fn: Callable[[Query], T]) -> T:
        return self._tx("BEGIN IMMEDIATE", fn)  # the write lock up front: no upgrade deadlocks

    def migrate(self) -> None:
        self.write(lambda q: migrations.apply(q, self.dialect))

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresDB:
    dialect = "postgresql"

    def __init__(self, url: str):
        import psycopg

        from hedgeway.ledger.postgres import parse_url

        self._psycopg = psycopg
        self._conninfo, self.schema, self._secrets = parse_url(url)
        self._lock = threading.Lock()
        self._conn = None
        self._closed = False
        try:
            with self._lock:
                self._connection()
        except psycopg.Error as exc:
            text = str(exc).strip()
            for secret in self._secrets:
                text = text.replace(secret, "***")
            raise ConfigError("ledger.url", f"cannot connect to {redact_url(url)}: {text}") from None

    def _connection(self):
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self._closed:
            raise self._psycopg.InterfaceError("the key store is closed")
        from hedgeway.ledger.postgres import PostgresStore

        conn = self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5,
                                     application_name="hedgeway-keys")
        if self.schema:
            PostgresStore._use_schema(conn, self.schema)  # the ledger's own rule: only our schema
        self._conn = conn
        return conn

    def _tx(self, fn: Callable[[Query], T], isolation: str | None, retry: bool) -> T:
        with self._lock:
            for attempt in range(2 if retry else 1):
                conn = self._connection()
                try:
                    with conn.transaction():
                        if isolation:
                            conn.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
                        return fn(lambda sql, params=(): conn.execute(sql.replace("?", "%s"), params))
                except (self._psycopg.OperationalError, self._psycopg.InterfaceError):
                    if not (conn.closed or conn.broken) or attempt == 1 or not retry:
                        raise
                    self._conn = None  # broken: reconnect and try the read once more

    def read(self, fn: Callable[[Query], T]) -> T:
        return self._tx(fn, "REPEATABLE READ", retry=True)

    def write(self, fn: Callable[[Query], T]) -> T:
        return self._tx(fn, None, retry=False)

    def migrate(self) -> None:
        def go(conn) -> None:
            with conn.transaction():
                # The same lock as the ledger's migrator: the two must never run steps concurrently.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))",
                             (f"hedgeway-ledger-migrate:{self.schema or ''}",))
                migrations.apply(conn.execute, self.dialect)
        with self._lock:
            go(self._connection())

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None


DATABASES: dict[str, Callable[[str], Any]] = {"sqlite": SQLiteDB, "postgresql": PostgresDB,
                                              "postgres": PostgresDB}


def open_db(url: str) -> SQLiteDB | PostgresDB:
    """A connection to the database a ledger URL names; ConfigError (no password) when it cannot be used."""
    scheme, sep, _ = url.partition("://")
    factory = DATABASES.get(scheme.lower()) if sep else None
    if factory is None:
        raise ConfigError("ledger.url", f"unsupported scheme {scheme!r}; supported: "
                                        f"{', '.join(s + '://' for s in DATABASES)}")
    try:
        return factory(url)
    except ImportError as exc:
        if not (exc.name or "").startswith("psycopg"):
            raise
        raise ConfigError("ledger.url", "a PostgreSQL ledger needs psycopg: pip install 'hedgeway[postgres]'"
                          ) from None
