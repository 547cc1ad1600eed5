"""The request ledger: `open_store(url)` picks a backend by URL scheme.

    sqlite:///relative/path.db      relative to the working directory
    sqlite:////abs/path.db          absolute path
    sqlite://:memory:               in-process, gone at close (tests)
    postgresql://user:pw@host:5432/db[?schema=NAME]    (also postgres://; needs `pip install hedgeway[postgres]`)

`?schema=NAME` puts the ledger's tables in that PostgreSQL schema, created if missing. Every other query
parameter is passed to libpq unchanged. Messages never contain a URL's password (see `redact_url`).
"""

from __future__ import annotations

import os

from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from hedgeway.errors import ConfigError
from hedgeway.ledger.base import RECORD_FIELDS, BatchWriter, LedgerStore, Record
from hedgeway.ledger.sqlite import SQLiteStore

__all__ = ["STORES", "BatchWriter", "LedgerStore", "Record", "RECORD_FIELDS", "SQLiteStore",
           "open_store", "redact_url", "sqlite_path"]

_SQLITE_FORMS = "sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite://:memory:"


def redact_url(url: str) -> str:
    """`url` with its password (in the user info or a `password=` query parameter) replaced by ***."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            userinfo, _, hostport = parts.netloc.rpartition("@")
            parts = parts._replace(netloc=f"{userinfo.partition(':')[0]}:***@{hostport}")
        if "password" in parts.query.lower():
            query = [(k, "***" if k.lower() == "password" else v)
                     for k, v in parse_qsl(parts.query, keep_blank_values=True)]
            parts = parts._replace(query=urlencode(query, safe="*"))
        return urlunsplit(parts)
    except ValueError:  # unparseable (e.g. a bad port): show nothing rather than risk a secret
        return "<unparseable URL>"


def sqlite_path(url: str) -> str:
    """The file path (or ":memory:") a sqlite:// URL names; ConfigError on any other form."""
    rest = url[len("sqlite://"):] if url.lower().startswith("sqlite://") else None
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if rest is None or not rest.startswith("/") or rest == "/":
        raise ConfigError("ledger.url", f"expected {_SQLITE_FORMS}")
    return rest[1:]  # "sqlite:///x.db" -> "x.db"; "sqlite:////abs/x.db" -> "/abs/x.db"


def require_ledger(url: str) -> None:
    """For commands that only read: ConfigError when a sqlite:// URL names no existing file (opening it
    would create an empty ledger and report nothing, instead of saying the URL is wrong)."""
    if url.lower().startswith("sqlite://"):
        path = sqlite_path(url)
        if path != ":memory:" and not os.path.isfile(path):
            raise ConfigError("ledger.url", f"no ledger at {path} (is --db right? `hedgeway serve` creates it)")


def _open_sqlite(url: str) -> LedgerStore:
    return SQLiteStore(sqlite_path(url))


def _open_postgres(url: str) -> LedgerStore:
    return _postgres_class()(url)


def _postgres_class() -> type:
    # Imported on demand: psycopg is an optional dependency, and SQLite users should never need it.
    try:
        from hedgeway.ledger.postgres import PostgresStore
    except ImportError as exc:
        if not (exc.name or "").startswith("psycopg"):
            raise
        raise ConfigError("ledger.url", "a PostgreSQL ledger needs psycopg: pip install 'hedgeway[postgres]'"
                          ) from None
    return PostgresStore


# URL scheme -> factory(url). Factories rather than classes, so the PostgreSQL backend (and psycopg)
# is imported only when a postgres URL is opened.
STORES: dict[str, Callable[[str], LedgerStore]] = {
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
}


def open_store(url: str) -> LedgerStore:
    """The store a ledger URL names (not yet migrated: call `migrate()`). ConfigError on a bad URL, an
    unreachable PostgreSQL server, or missing psycopg; the message never includes a password."""
    scheme, sep, _ = url.partition("://")
    factory = STORES.get(scheme.lower()) if sep else None
    if factory is None:
        # Only the scheme is echoed: the rest of a URL may hold credentials.
        got = f"unsupported scheme {scheme!r}" if sep else "no scheme"
        raise ConfigError("ledger.url", f"{got}; supported: {', '.join(s + '://' for s in STORES)}")
    return factory(url)


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":  # `from hedgeway.ledger import PostgresStore`, still lazily
        return _postgres_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
