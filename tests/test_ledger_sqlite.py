"""SQLite ledger store, migrations, URL handling and the BatchWriter, on real database files."""

from __future__ import annotations

import sqlite3
import sys
import threading
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from hedgeway.errors import ConfigError
from hedgeway.ledger import RECORD_FIELDS, STORES, BatchWriter, Record, SQLiteStore, open_store, redact_url
from hedgeway.ledger import migrations

DAY1 = datetime(2024, 5, 1, tzinfo=timezone.utc).timestamp()
DAY2 = DAY1 + 86400


def rec(i: int = 0, **kw) -> Record:
    base = dict(request_id=f"req-{i}", ts=DAY1 + i, endpoint="chat", model_name="gpt-4o-mini",
                deployment="openai-mini", provider="openai", status=200)
    base.update(kw)
    return Record(**base)


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "ledger.db")
    s.migrate()
    yield s
    s.close()


# --- URLs -------------------------------------------------------------------------------------------------

def test_open_store_url_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = open_store("sqlite:///sub/dir/rel.db")  # parent directories are created
    rel.migrate()
    rel.close()
    assert (tmp_path / "sub" / "dir" / "rel.db").is_file()
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db")  # tmp_path is absolute: sqlite:////tmp/...
    absolute.close()
    assert (tmp_path / "abs.db").is_file()
    mem = open_store("sqlite://:memory:")
    mem.migrate()
    mem.write([rec()])
    assert len(mem.records()) == 1
    mem.close()


@pytest.mark.parametrize("url", ["mysql://root:hunter2@db/ledger", "hedgeway.db", "sqlite://relative.db"])
def test_bad_urls_raise_config_error_without_secrets(url):
    with pytest.raises(ConfigError) as info:
        open_store(url)
    assert info.value.path == "ledger.url"
    assert "hunter2" not in str(info.value)
    if url.startswith("mysql"):
        assert "sqlite://" in str(info.value) and "postgresql://" in str(info.value)


def test_missing_psycopg_gives_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes `import psycopg` fail
    monkeypatch.delitem(sys.modules, "hedgeway.ledger.postgres", raising=False)
    with pytest.raises(ConfigError) as info:
        open_store("postgresql://root@127.0.0.1/test")
    assert "hedgeway[postgres]" in str(info.value)


def test_registry_and_redaction():
    assert set(STORES) == {"sqlite", "postgresql", "postgres"}
    assert redact_url("postgresql://u:s3cr%40t@h:5432/db?schema=s") == "postgresql://u:***@h:5432/db?schema=s"
    assert "hunter2" not in redact_url("postgresql://u@h/db?password=hunter2")
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


# --- connection settings and migrations --------------------------------------------------------------------

def test_pragmas(store, tmp_path):
    other = sqlite3.connect(tmp_path / "ledger.db")
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # persistent, seen by every reader
    other.close()
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_schema_has_one_column_per_record_field(store):
    cols = [row[1] for row in store._conn.execute("PRAGMA table_info(requests)")]
    assert cols == ["id", *RECORD_FIELDS]
    indexed = {row[1] for row in store._conn.execute("PRAGMA index_list(requests)")}
    assert {"requests_ts", "requests_model_ts", "requests_key_ts"} <= indexed


def test_migrations_are_idempotent_and_append_only(tmp_path, monkeypatch):
    path = tmp_path / "m.db"
    for _ in range(2):  # a second run, and a second process opening the file, apply nothing
        s = SQLiteStore(path)
        s.migrate()
        s.migrate()
        names = [r[0] for r in s._conn.execute("SELECT name FROM _migrations ORDER BY rowid")]
        assert names == [step.name for step in migrations.SQLITE]
        s.close()
    # a step appended later is applied exactly once, after the existing ones
    extra = migrations.Step("999_test_add_table", ("CREATE TABLE extra_test (x INTEGER)",))
    monkeypatch.setitem(migrations.STEPS, "sqlite", [*migrations.SQLITE, extra])
    s = SQLiteStore(path)
    s.migrate()
    s.migrate()  # would fail with "table extra_test already exists" if re-applied
    names = [r[0] for r in s._conn.execute("SELECT name FROM _migrations ORDER BY rowid")]
    assert names[-1] == "999_test_add_table" and names.count("999_test_add_table") == 1
    s.close()


def test_dialects_share_step_names():
    sqlite_names = [s.name for s in migrations.SQLITE]
    assert sqlite_names == [s.name for s in migrations.POSTGRES]
    assert len(set(sqlite_names)) == len(sqlite_names)


def test_concurrent_migrations_do_not_collide(tmp_path):
    path = tmp_path / "race.db"
    errors = []

    def go():
        try:
            s = SQLiteStore(path)
            s.migrate()
            s.close()
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = SQLiteStore(path)
    assert s._conn.execute("SELECT count(*) FROM _migrations").fetchone()[0] == len(migrations.SQLITE)
    s.close()


# --- write / records ---------------------------------------------------------------------------------------

def test_roundtrip_keeps_every_field_and_type(store):
    full = rec(1, key_id="k1", team="t1", error_type="upstream_error", stream=True, prompt_tokens=11,
               completion_tokens=22, cached_tokens=3, cost=Decimal("0.000123456789"), latency_ms=12.5,
               ttft_ms=3.25, overhead_ms=0.4, attempts=2, route='{"strategy": "least-in-flight"}', cache="miss")
    minimal = rec(2, deployment=None, provider=None, status=502)
    store.write([full, minimal])
    got = store.records()
    assert got == [full, minimal]
    assert type(got[0].cost) is Decimal and got[0].stream is True and got[1].stream is False


def test_cost_is_stored_as_fixed_point_text(store):
    store.write([rec(cost=Decimal("7.5E-8"))])
    assert store._conn.execute("SELECT cost FROM requests").fetchone()[0] == "0.000000075"


def test_a_failing_batch_inserts_nothing(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.write([rec(1), rec(2, model_name=None)])  # NOT NULL violation on the second row
    assert store.records() == []


def test_records_oldest_first_and_since(store):
    store.write([rec(3), rec(1), rec(2)])
    assert [r.request_id for r in store.records()] == ["req-1", "req-2", "req-3"]
    assert [r.request_id for r in store.records(since=DAY1 + 2)] == ["req-2", "req-3"]


# --- spend -------------------------------------------------------------------------------------------------

def test_spend_sums_exactly(store):
    assert 0.1 + 0.1 + 0.1 != 0.3  # the trap a float column or float sum would fall into
    store.write([rec(i, cost=Decimal("0.1")) for i in range(3)])
    [row] = store.spend(group_by=[])
    assert type(row["cost"]) is Decimal and row["cost"] == Decimal("0.3")


def test_spend_sums_ten_thousand_tiny_prices_exactly(store):
    price = Decimal("0.000000075")
    records = [rec(i, cost=price * (i % 997 + 1)) for i in range(10_000)]
    store.write(records)
    expected = sum((r.cost for r in records), Decimal(0))
    [row] = store.spend(group_by=[])
    assert row["cost"] == expected and row["requests"] == 10_000


def test_spend_groups(store):
    store.write([
        rec(1, model_name="a", key_id="k1", team="red", status=200, prompt_tokens=10, completion_tokens=1,
            cost=Decimal("0.01"), latency_ms=10),
        rec(2, model_name="a", key_id="k2", team="red", status=502, prompt_tokens=20, completion_tokens=0,
            cost=Decimal("0"), latency_ms=20),
        rec(3, model_name="a", key_id="k1", status=200, prompt_tokens=30, completion_tokens=3,
            cost=Decimal("0.03"), latency_ms=40),
        rec(4, model_name="b", key_id=None, status=429, prompt_tokens=5, cost=Decimal("0.005"), latency_ms=5),
        rec(0, ts=DAY2 - 1, model_name="b", cost=Decimal("1")),  # 23:59:59 UTC, still day 1
        rec(5, ts=DAY2, model_name="b", cost=Decimal("2")),  # 00:00:00 UTC, day 2
    ])
    by_model = {r["model_name"]: r for r in store.spend(group_by=["model_name"])}
    assert by_model["a"] == {"model_name": "a", "requests": 3, "errors": 1, "prompt_tokens": 60,
                             "completion_tokens": 4, "cost": Decimal("0.04"), "latency_p50_ms": 20.0,
                             "estimated": 0}
    assert by_model["b"]["requests"] == 3 and by_model["b"]["errors"] == 1
    assert by_model["b"]["cost"] == Decimal("3.005")
    days = store.spend(group_by=["day"])
    assert [(r["day"], r["requests"], r["cost"]) for r in days] == [
        ("2024-05-01", 5, Decimal("1.045")), ("2024-05-02", 1, Decimal("2"))]
    keys = store.spend(group_by=("key_id", "team"))
    assert [(r["key_id"], r["team"], r["requests"]) for r in keys] == [
        (None, None, 3), ("k1", None, 1), ("k1", "red", 1), ("k2", "red", 1)]  # NULLs sort first
    assert [r["deployment"] for r in store.spend(group_by="deployment")] == ["openai-mini"]


def test_spend_since_and_empty(store):
    assert store.spend() == [] and store.spend(group_by=[]) == []
    store.write([rec(1, ts=DAY1, cost=Decimal("1")), rec(2, ts=DAY2, cost=Decimal("2"))])
    [row] = store.spend(since=DAY1 + 1, group_by=["day"])
    assert row == {"day": "2024-05-02", "requests": 1, "errors": 0, "prompt_tokens": 0, "completion_tokens": 0,
                   "cost": Decimal("2"), "latency_p50_ms": 0.0, "estimated": 0}
    assert store.spend(since=DAY2 + 1) == []


@pytest.mark.parametrize("bad", [["model"], ["day", "status"], ["ts; DROP TABLE requests"]])
def test_spend_rejects_unknown_groups(store, bad):
    with pytest.raises(ValueError, match="allowed"):
        store.spend(group_by=bad)


def test_ping(tmp_path):
    s = SQLiteStore(tmp_path / "p.db")
    assert s.ping() is True
    s.close()
    assert s.ping() is False


# --- BatchWriter on a real store ---------------------------------------------------------------------------

def test_batch_writer_flushes_everything_on_close(tmp_path):
    path = tmp_path / "bw.db"
    s = SQLiteStore(path)
    s.migrate()
    # a long flush interval: only close() can have written the tail of the queue
    writer = BatchWriter(s, batch_size=500, flush_interval=30.0)
    for i in range(1234):
        writer.submit(rec(i, cost=Decimal("0.001")))
    writer.close(timeout=10)
    assert writer.written == 1234 and writer.pending == 0
    s = SQLiteStore(path)
    [row] = s.spend(group_by=[])
    assert row["requests"] == 1234 and row["cost"] == Decimal("1.234")
    assert len({r.request_id for r in s.records()}) == 1234
    s.close()


class FailsFirstWrite:
    """Wraps a real store; the first write raises as a lost database connection would."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def write(self, records):
        self.calls += 1
        if self.calls == 1:
            raise sqlite3.OperationalError("database is locked")
        self.inner.write(records)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_batch_writer_retries_after_a_failure(tmp_path):
    path = tmp_path / "retry.db"
    inner = SQLiteStore(path)
    inner.migrate()
    flaky = FailsFirstWrite(inner)
    writer = BatchWriter(flaky, batch_size=100, flush_interval=0.01)
    for i in range(250):
        writer.submit(rec(i))
    writer.close(timeout=10)
    assert writer.failures == 1 and writer.written == 250 and writer.healthy
    s = SQLiteStore(path)
    assert sorted(r.request_id for r in s.records()) == sorted(f"req-{i}" for i in range(250))
    s.close()
