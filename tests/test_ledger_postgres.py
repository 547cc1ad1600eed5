"""PostgreSQL ledger store against a real server on 127.0.0.1:5432 (database `test`, trust auth).

Each session works in its own randomly named schema and drops it at the end, so runs never see each
other's rows. No server: the tests skip, except under CI=true, where they fail. HEDGEWAY_TEST_PG_URL
overrides the server (a URL without `?schema=`).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from hedgeway.errors import ConfigError
from hedgeway.ledger import RECORD_FIELDS, BatchWriter, Record, migrations, open_store

DAY1 = datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp()
DAY2 = DAY1 + 86400
CANDIDATES = [os.environ["HEDGEWAY_TEST_PG_URL"]] if os.environ.get("HEDGEWAY_TEST_PG_URL") else [
    "postgresql://root@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"]


def rec(i: int = 0, **kw) -> Record:
    base = dict(request_id=f"req-{i}", ts=DAY1 + i, endpoint="chat", model_name="gpt-4o-mini",
                deployment="openai-mini", provider="openai", status=200)
    base.update(kw)
    return Record(**base)


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required under CI=true: {reason}")
    pytest.skip(f"PostgreSQL not reachable ({reason}); set CI=true to make this a failure")


@pytest.fixture(scope="session")
def pg_admin():
    """(server URL, autocommit admin connection) for the first candidate that answers."""
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed: pip install 'hedgeway[postgres]'")
    reasons = []
    for url in CANDIDATES:
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=3)
        except psycopg.Error as exc:
            reasons.append(str(exc).strip().splitlines()[0])
            continue
        yield url, conn
        conn.close()
        return
    _unavailable("; ".join(reasons))


@pytest.fixture(scope="session")
def pg_url(pg_admin):
    """A ledger URL in a fresh schema, which the store creates itself; dropped at the end."""
    url, admin = pg_admin
    schema = f"hw_test_{uuid.uuid4().hex[:12]}"
    yield f"{url}?schema={schema}"
    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.execute(f'DROP SCHEMA IF EXISTS "{schema}_race" CASCADE')


@pytest.fixture
def pg(pg_url, pg_admin):
    store = open_store(pg_url)
    store.migrate()
    pg_admin[1].execute(f"TRUNCATE {store.schema}.requests")  # each test starts from an empty table
    yield store
    store.close()


def _terminate(store, admin) -> None:
    """Kill the store's server connection, as a server restart or failover would."""
    admin.execute("SELECT pg_terminate_backend(%s)", (store._conn.info.backend_pid,))
    time.sleep(0.1)


# --- schema and migrations ---------------------------------------------------------------------------------

def test_tables_live_in_the_requested_schema(pg, pg_admin):
    tables = {r[0] for r in pg_admin[1].execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (pg.schema,))}
    assert {"requests", "_migrations"} <= tables
    cols = pg_admin[1].execute(
        "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'requests' ORDER BY ordinal_position", (pg.schema,)).fetchall()
    assert [c[0] for c in cols] == ["id", *RECORD_FIELDS]
    types = {c[0]: c[1:] for c in cols}
    assert types["cost"] == ("numeric", 24, 12)
    assert types["ts"][0] == "double precision" and types["stream"][0] == "boolean"


def test_migrations_are_idempotent(pg):
    pg.migrate()
    pg.migrate()
    names = [r[0] for r in pg._conn.execute("SELECT name FROM _migrations ORDER BY applied_at")]
    assert names == [step.name for step in migrations.POSTGRES]


def test_concurrent_workers_create_schema_and_migrate_once(pg_url, pg_admin):
    url = pg_url.replace("?schema=", "?connect_timeout=5&schema=") + "_race"
    errors = []

    def go():
        try:
            s = open_store(url)
            s.migrate()
            s.close()
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    schema = url.rsplit("=", 1)[1]
    count = pg_admin[1].execute(f'SELECT count(*) FROM "{schema}"._migrations').fetchone()[0]
    assert count == len(migrations.POSTGRES)


# --- write / records / spend -------------------------------------------------------------------------------

def test_roundtrip_keeps_every_field_and_type(pg):
    full = rec(1, key_id="k1", team="t1", error_type="upstream_error", stream=True, prompt_tokens=11,
               completion_tokens=22, cached_tokens=3, cost=Decimal("0.000123456789"), latency_ms=12.5,
               ttft_ms=3.25, overhead_ms=0.4, attempts=2, route='{"strategy": "weighted"}', cache="hit")
    minimal = rec(2, deployment=None, provider=None, status=502)
    pg.write([full, minimal])
    got = pg.records()
    assert got == [full, minimal]
    assert type(got[0].cost) is Decimal and got[0].stream is True and got[1].stream is False


def test_a_failing_batch_inserts_nothing(pg):
    import psycopg

    with pytest.raises(psycopg.errors.NotNullViolation):
        pg.write([rec(1), rec(2, model_name=None)])
    assert pg.records() == []
    pg.write([rec(3)])  # the connection is still usable
    assert len(pg.records()) == 1


def test_a_batch_repeating_stored_rows_adds_only_the_new_ones(pg):
    """A replayed batch (spool, or a retry after a commit whose reply was lost) holds rows already stored: the
    straight COPY fails on the unique index, and the merge through the staging table adds the rest once."""
    pg.write([rec(1), rec(2)])
    pg.write([rec(2, status=500), rec(3)])
    got = pg.records()
    assert [r.request_id for r in got] == [rec(1).request_id, rec(2).request_id, rec(3).request_id]
    assert got[1].status == 200  # the stored row is kept, not overwritten
    pg.write([rec(4)])  # and the next batch goes straight in again
    assert len(pg.records()) == 4


def test_spend_sums_exactly(pg):
    pg.write([rec(i, cost=Decimal("0.1")) for i in range(3)])
    [row] = pg.spend(group_by=[])
    assert type(row["cost"]) is Decimal and row["cost"] == Decimal("0.3")


def test_spend_sums_ten_thousand_tiny_prices_exactly(pg):
    price = Decimal("0.000000075")
    records = [rec(i, cost=price * (i % 997 + 1)) for i in range(10_000)]
    pg.write(records)
    [row] = pg.spend(group_by=[])
    assert row["requests"] == 10_000 and row["cost"] == sum((r.cost for r in records), Decimal(0))


def test_spend_groups_and_since(pg):
    pg.write([
        rec(1, model_name="a", key_id="k1", team="red", prompt_tokens=10, completion_tokens=1,
            cost=Decimal("0.01"), latency_ms=10),
        rec(2, model_name="a", key_id="k2", team="red", status=502, prompt_tokens=20, latency_ms=20),
        rec(3, model_name="a", key_id="k1", prompt_tokens=30, completion_tokens=3, cost=Decimal("0.03"),
            latency_ms=40),
        rec(4, model_name="b", status=429, prompt_tokens=5, cost=Decimal("0.005"), latency_ms=5),
        rec(0, ts=DAY2 - 1, model_name="b", cost=Decimal("1")),
        rec(5, ts=DAY2, model_name="b", cost=Decimal("2")),
    ])
    by_model = {r["model_name"]: r for r in pg.spend(group_by=["model_name"])}
    assert by_model["a"] == {"model_name": "a", "requests": 3, "errors": 1, "prompt_tokens": 60,
                             "completion_tokens": 4, "cost": Decimal("0.04"), "latency_p50_ms": 20.0,
                             "estimated": 0}
    assert by_model["b"]["cost"] == Decimal("3.005") and by_model["b"]["errors"] == 1
    days = pg.spend(group_by=["day"])
    assert [(r["day"], r["requests"], r["cost"]) for r in days] == [
        ("2024-05-01", 5, Decimal("1.045")), ("2024-05-02", 1, Decimal("2"))]
    keys = pg.spend(group_by=("key_id", "team"))
    assert [(r["key_id"], r["team"], r["requests"]) for r in keys] == [
        (None, None, 3), ("k1", None, 1), ("k1", "red", 1), ("k2", "red", 1)]  # same order as SQLite
    assert [r["day"] for r in pg.spend(since=DAY2, group_by=["day"])] == ["2024-05-02"]
    assert [r.request_id for r in pg.records(since=DAY2 - 1)] == ["req-0", "req-5"]
    assert pg.spend(since=DAY2 + 1) == [] and pg.spend(since=DAY2 + 1, group_by=[]) == []
    with pytest.raises(ValueError):
        pg.spend(group_by=["model"])


# --- failures ----------------------------------------------------------------------------------------------

def test_reads_survive_a_dropped_connection(pg, pg_admin):
    pg.write([rec(1)])
    _terminate(pg, pg_admin[1])
    assert len(pg.records()) == 1  # reconnected transparently
    _terminate(pg, pg_admin[1])
    assert pg.ping() is True


def test_a_write_on_a_dropped_connection_fails_then_the_next_reconnects(pg, pg_admin):
    import psycopg

    _terminate(pg, pg_admin[1])
    with pytest.raises(psycopg.OperationalError):
        pg.write([rec(1)])
    pg.write([rec(2)])
    assert [r.request_id for r in pg.records()] == ["req-2"]


def test_batch_writer_loses_nothing_across_a_dropped_connection(pg, pg_admin, pg_url):
    _terminate(pg, pg_admin[1])
    writer = BatchWriter(pg, batch_size=200, flush_interval=0.01)
    for i in range(1234):
        writer.submit(rec(i))
    writer.close(timeout=20)  # also closes `pg`
    assert writer.failures >= 1 and writer.written == 1234
    fresh = open_store(pg_url)
    assert len({r.request_id for r in fresh.records()}) == 1234
    fresh.close()


def test_unreachable_server_is_a_config_error_without_the_password():
    with pytest.raises(ConfigError) as info:
        open_store("postgresql://hw:s3cret-pw@127.0.0.1:1/test?connect_timeout=2")
    assert info.value.path == "ledger.url"
    assert "s3cret-pw" not in str(info.value) and "hw:***@127.0.0.1:1" in str(info.value)


def test_bad_schema_name_is_a_config_error(pg_admin):
    with pytest.raises(ConfigError, match="schema"):
        open_store(f"{pg_admin[0]}?schema=a;drop")


def test_spend_cli_reads_postgres(pg, pg_url, capsys):
    from hedgeway.cli import main

    pg.write([rec(i, cost=Decimal("0.1")) for i in range(3)])
    assert main(["spend", "--db", pg_url.replace("postgresql://", "postgres://", 1), "--by", "model",
                 "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["model_name"] == "gpt-4o-mini" and row["cost"] == "0.3" and row["requests"] == 3


def test_gateway_writes_its_ledger_to_postgres(pg, pg_url, upstream):
    """The real server, the official SDK, and the ledger in PostgreSQL through the same interface."""
    import openai

    from conftest import MASTER, gateway_config
    from hedgeway.config import from_dict
    from hedgeway.http.background import BackgroundGateway

    with BackgroundGateway(from_dict(gateway_config(upstream.base_url, pg_url))) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=MASTER, max_retries=0)
        for _ in range(3):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        for _ in client.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                messages=[{"role": "user", "content": "y"}]):
            pass
    rows = pg.records()
    assert len(rows) == 4 and sum(r.stream for r in rows) == 1
    assert sum((r.cost for r in rows), Decimal(0)) == Decimal("0.000018")  # 4 × 0.0000045, exact
