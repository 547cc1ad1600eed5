"""The ledger never loses or doubles a record when its database blinks (ledger/spool.py + BatchWriter).

Unit tests run on SQLite with a store that fails on command. The outage tests use the real PostgreSQL
(127.0.0.1:5432, database `test`; skipped without it, failed under CI=true): the gateway's ledger logs in
as a throw-away role into its own schema, and the test takes the database away from it under load —
`ALTER ROLE … NOLOGIN` + `pg_terminate_backend` (as a restart or failover looks to a client), and a held
`LOCK TABLE … ACCESS EXCLUSIVE` (a hung database; the writer's statement_timeout turns it into errors).
The shared server itself is never stopped. Afterwards every request id a client received is counted:
sent == stored, duplicates 0.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
import yaml

from conftest import MASTER, gateway_config
from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import BatchWriter, SQLiteStore
from hedgeway.ledger.spool import Spool
from test_ledger_postgres import pg_admin, rec  # noqa: F401  (session fixture, record factory)


class Switch:
    """Wraps a real store; writes raise while `down` is set, as a lost database would."""

    def __init__(self, inner):
        self.inner = inner
        self.down = False
        self.attempts = 0

    def write(self, records):
        self.attempts += 1
        if self.down:
            raise OSError("database unreachable")
        self.inner.write(records)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _sqlite(tmp_path, name="l.db"):
    s = SQLiteStore(tmp_path / name)
    s.migrate()
    return s


def _spool_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.jsonl")) if directory.is_dir() else 0


# --- unit: spool + writer on SQLite ------------------------------------------------------------------------

def test_outage_spools_then_replays_exactly_once(tmp_path):
    store = Switch(_sqlite(tmp_path))
    spool = Spool(tmp_path / "spool", "sqlite:///l.db")
    writer = BatchWriter(store, batch_size=50, flush_interval=0.005, max_backoff=0.05, spool=spool)
    for i in range(100):
        writer.submit(rec(i))
    time.sleep(0.1)
    store.down = True
    for i in range(100, 400):
        writer.submit(rec(i, cost=Decimal("0.000000075")))
    time.sleep(0.2)
    assert spool.spooled >= 300 and writer.healthy and not writer.store_ok and writer.pending == 0
    store.down = False
    for i in range(400, 500):
        writer.submit(rec(i))
    writer.close(timeout=10)
    check = _sqlite(tmp_path)
    got = [r.request_id for r in check.records()]
    assert len(got) == 500 and len(set(got)) == 500
    assert [r for r in check.records() if r.request_id == "req-123"][0].cost == Decimal("0.000000075")
    assert _spool_bytes(tmp_path / "spool") == 0 and spool.replayed == spool.spooled


def test_replay_repeating_rows_already_stored_adds_no_duplicate(tmp_path):
    store = _sqlite(tmp_path)
    store.write([rec(1), rec(2)])  # landed, but the writer did not learn it (e.g. lost ack)
    spool = Spool(tmp_path / "spool", "x")
    assert spool.append([rec(1), rec(2), rec(3)])
    assert spool.replay(store.write, batch_size=2) == 3
    assert sorted(r.request_id for r in store.records()) == ["req-1", "req-2", "req-3"]


def test_close_during_outage_spools_everything_and_the_next_process_replays_it(tmp_path):
    store = Switch(_sqlite(tmp_path))
    store.down = True
    writer = BatchWriter(store, batch_size=100, flush_interval=30.0,
                         spool=Spool(tmp_path / "spool", "ledger-a"))
    for i in range(250):
        writer.submit(rec(i))
    writer.close(timeout=10)  # SIGTERM while the database is down
    # it spooled instead of waiting for the database: the writer finished by itself (not cut off by the
    # timeout) after one failed write and at most one last replay attempt
    assert not writer._thread.is_alive() and store.attempts <= 2
    assert _spool_bytes(tmp_path / "spool") > 0
    other = Spool(tmp_path / "spool", "ledger-b")  # another ledger's spool never adopts these
    assert not other.pending
    again = Spool(tmp_path / "spool", "ledger-a")
    assert again.pending
    fresh = _sqlite(tmp_path)
    assert again.replay(fresh.write, 100) == 250
    assert len({r.request_id for r in fresh.records()}) == 250 == len(fresh.records())
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


def test_a_dead_process_spool_is_adopted_by_exactly_one_sibling(tmp_path):
    dead = Spool(tmp_path / "s", "L")
    assert dead.append([rec(1), rec(2)])
    dead._fd, fd = None, dead._fd
    os.close(fd)  # the process died: its lock is gone, its file stays
    first, second = Spool(tmp_path / "s", "L"), Spool(tmp_path / "s", "L")
    assert first.pending and not second.pending  # a worker holds what it adopted
    got = []
    assert first.replay(got.extend, 10) == 2 and not first.pending
    assert list((tmp_path / "s").glob("*.jsonl")) == []
    first.close()
    second.close()


def test_a_torn_last_line_is_skipped_and_the_spool_is_bounded(tmp_path):
    spool = Spool(tmp_path / "s", "x", max_bytes=4096)
    assert spool.append([rec(1), rec(2)])
    with open(spool._path, "ab") as f:
        f.write(b'{"request_id": "req-3", "ts": 1')  # a crash mid-append
    spool._size += 1
    assert not spool.append([rec(i) for i in range(100)])  # over max_bytes: refused whole
    got = []
    assert spool.replay(got.extend, 10) == 2 and [r.request_id for r in got] == ["req-1", "req-2"]


def test_a_hung_store_at_shutdown_is_rescued_into_the_spool(tmp_path):
    release = threading.Event()

    class Hung:
        def write(self, records):
            release.wait(5)
            raise OSError("statement timeout")

        def close(self):
            pass

    spool = Spool(tmp_path / "s", "hung")
    writer = BatchWriter(Hung(), batch_size=10, flush_interval=0.001, spool=spool)
    for i in range(35):
        writer.submit(rec(i))
    time.sleep(0.05)
    writer.close(timeout=0.2)
    release.set()
    got = []
    Spool(tmp_path / "s", "hung").replay(got.extend, 100)
    assert {r.request_id for r in got} == {f"req-{i}" for i in range(35)}


# --- real PostgreSQL under load ----------------------------------------------------------------------------

@pytest.fixture
def pg_role(pg_admin):  # noqa: F811
    """(ledger URL for a throw-away role in its own schema, admin connection, role name)."""
    url, admin = pg_admin
    role = f"hw_spool_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE ROLE "{role}" LOGIN')
    admin.execute(f'CREATE SCHEMA "{role}" AUTHORIZATION "{role}"')
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    # statement_timeout: a locked table must become an error on the writer, not a hang
    ledger = (f"postgresql://{role}@{host}{parts.path}?schema={role}&connect_timeout=2"
              "&options=-c%20statement_timeout%3D400")
    yield ledger, admin, role
    admin.execute(f'ALTER ROLE "{role}" LOGIN')
    _kick(admin, role)
    admin.execute(f'DROP SCHEMA IF EXISTS "{role}" CASCADE')
    admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def _kick(admin, role: str) -> None:
    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))


def _block(admin, role: str) -> None:
    admin.execute(f'ALTER ROLE "{role}" NOLOGIN')
    _kick(admin, role)


def _stored(admin, role: str) -> list[str]:
    return [r[0] for r in admin.execute(f'SELECT request_id FROM "{role}".requests')]


class Load:
    """Client threads sending chat requests through the gateway; keeps every request id it got back."""

    def __init__(self, port: int, threads: int = 6):
        self.port = port
        self.ids: list[str] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
                             "stream": n % 3 == 0})
        headers = {"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"}
        while not self.stop.is_set():
            conn.request("POST", "/v1/chat/completions", body, headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                self.errors.append(str(resp.status))
            self.ids.append(resp.getheader("x-hedgeway-request-id"))
            time.sleep(0.002)
        conn.close()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(10)


def _ready(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/readyz")
    status = conn.getresponse().status
    conn.close()
    return status


def test_postgres_outages_under_load_lose_and_double_nothing(pg_role, upstream, tmp_path):
    ledger, admin, role = pg_role
    spool_dir = tmp_path / "spool"
    cfg = gateway_config(upstream.base_url, ledger)
    cfg["ledger"].update(spool_path=str(spool_dir), flush_interval=0.01)
    outage = {}
    with BackgroundGateway(from_dict(cfg)) as gw, Load(gw.port) as load:
        time.sleep(0.4)
        _block(admin, role)  # the database goes away (restart / failover, as clients see it)
        time.sleep(0.8)
        outage["spooled_bytes"] = _spool_bytes(spool_dir)
        outage["ready"] = _ready(gw.port)
        admin.execute(f'ALTER ROLE "{role}" LOGIN')  # back
        time.sleep(0.6)
        import psycopg

        locker = psycopg.connect(_admin_url(admin))
        locker.execute(f'LOCK TABLE "{role}".requests IN ACCESS EXCLUSIVE MODE')  # a hung database
        time.sleep(0.8)
        outage["locked_spooled_bytes"] = _spool_bytes(spool_dir)
        locker.rollback()
        locker.close()
        time.sleep(0.4)
    sent = load.ids
    stored = _stored(admin, role)
    print(f"\noutage figures: sent={len(sent)} stored={len(stored)} "
          f"duplicates={len(stored) - len(set(stored))} spooled_bytes={outage['spooled_bytes']}/{outage['locked_spooled_bytes']}")
    assert load.errors == []
    assert outage["spooled_bytes"] > 0 and outage["ready"] == 200  # spooling: still safe, still ready
    assert outage["locked_spooled_bytes"] > 0  # the hung (locked) database spooled too
    assert len(sent) > 300 and None not in sent
    assert len(stored) == len(set(stored))  # duplicates: 0
    assert sorted(stored) == sorted(sent)  # sent == stored
    assert _spool_bytes(spool_dir) == 0


def _admin_url(admin) -> str:
    info = admin.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


def test_sigterm_while_postgres_is_down_loses_nothing(pg_role, upstream, tmp_path):
    """A real `hedgeway serve` process gets SIGTERM while its database is unreachable: the records in
    its memory go to the spool, and the next gateway on the same spool replays them once."""
    ledger, admin, role = pg_role
    spool_dir = tmp_path / "spool"
    cfg = gateway_config(upstream.base_url, ledger)
    cfg["ledger"].update(spool_path=str(spool_dir), flush_interval=30.0, batch_size=100_000)  # all in memory
    path = tmp_path / "hedgeway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "hedgeway", "serve", "--config", str(path), "--port", "0"],
                            stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in proc.stderr:
            if "listening on" in line:
                port = int(line.rsplit(":", 1)[1].split()[0])
                break
        assert port, "gateway did not start"
        with Load(port, threads=3) as load:
            time.sleep(0.5)
        _block(admin, role)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    sent = load.ids
    assert len(sent) > 50 and _stored(admin, role) == [] and _spool_bytes(spool_dir) > 0
    admin.execute(f'ALTER ROLE "{role}" LOGIN')
    cfg["ledger"].update(flush_interval=0.01, batch_size=100)
    with BackgroundGateway(from_dict(cfg)):
        deadline = time.monotonic() + 5
        while len(_stored(admin, role)) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
    stored = _stored(admin, role)
    print(f"\nSIGTERM during outage: sent={len(sent)} stored={len(stored)} "
          f"duplicates={len(stored) - len(set(stored))}")
    assert len(stored) == len(set(stored)) and sorted(stored) == sorted(sent)
    assert _spool_bytes(spool_dir) == 0
