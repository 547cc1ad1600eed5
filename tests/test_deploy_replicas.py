"""The docker-compose topology without containers: 3 `hedgeway serve` processes on loopback sharing the real
Redis (limits, budgets) and PostgreSQL (ledger, keys), behind a small round-robin TCP balancer that, like
nginx's `proxy_next_upstream error`, skips a replica that refuses the connection. Proves:
* a key created through one replica works on all of them, and its budget holds across them;
* a model's RPM holds globally (exactly `rpm` admitted, whichever replica took each request);
* the Redis cache is shared: an answer stored through one replica is a hit on the others, at zero cost;
* SIGTERM to one replica mid-load: its in-flight requests finish, and every answered request — on any
  replica — is in the one ledger exactly once (no loss, no double count)."""

from __future__ import annotations

import asyncio
import http.client
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import yaml

from conftest import MASTER, UPSTREAM_KEY, require_service, wait_ready
from test_limits_support import REDIS_URL, delete_prefix, free_port, redis_available, run

PG_CANDIDATES = [os.environ.get("HEDGEWAY_TEST_PG_URL") or "postgresql://root@127.0.0.1:5432/test",
                 "postgresql://postgres@127.0.0.1:5432/test"]
REPLICAS = 3


class Balancer:
    """Round-robin TCP balancer on loopback, one backend per client connection; connection refused -> next."""

    def __init__(self, ports: list[int]):
        self.ports = ports
        self.hits = {p: 0 for p in ports}
        self.spans: list[tuple[int, float, float]] = []  # (backend port, connected, closed) per connection
        self._rr = itertools.cycle(range(len(ports)))
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(5)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _pipe(self, reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _handle(self, creader, cwriter):
        for _ in range(len(self.ports)):
            port = self.ports[next(self._rr)]
            try:
                ureader, uwriter = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            self.hits[port] += 1
            start = time.monotonic()
            await asyncio.gather(self._pipe(creader, uwriter), self._pipe(ureader, cwriter))
            self.spans.append((port, start, time.monotonic()))
            return
        cwriter.close()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


def _pg_admin():
    try:
        import psycopg
    except ImportError:
        require_service("PostgreSQL", "psycopg is not installed")
    reasons = []
    for url in PG_CANDIDATES:
        try:
            return url, psycopg.connect(url, autocommit=True, connect_timeout=3)
        except psycopg.Error as exc:
            reasons.append(str(exc).strip().splitlines()[0])
    require_service("PostgreSQL", "; ".join(reasons))


@pytest.fixture(scope="module")
def cluster(upstream, tmp_path_factory):
    reason = redis_available()
    if reason:
        require_service("Redis", reason)
    pg_server, admin = _pg_admin()
    tag = uuid.uuid4().hex[:10]
    schema, prefix = f"hw_replicas_{tag}", f"hwrep-{tag}:"
    ledger_url = f"{pg_server}?schema={schema}"
    dep = {"provider": "openai", "model": "ok-mini", "api_base": upstream.base_url, "api_key": UPSTREAM_KEY,
           "price": {"input": "0.15", "output": "0.60"}}
    cfg = {"server": {"host": "127.0.0.1", "workers": 1}, "auth": {"master_key": MASTER},
           "ledger": {"url": ledger_url, "flush_interval": 0.02},
           "limits": {"backend": "redis", "redis": {"url": REDIS_URL, "prefix": prefix}, "budget_wait": 0,
                      "models": {"capped": {"rpm": 10}}},
           "cache": {"backend": "redis", "redis_url": REDIS_URL, "prefix": f"{prefix}cache", "embedder": "none",
                     "models": {"cached": {"enabled": True}}},
           "models": [{"name": "gpt-4o-mini", "deployments": [dep]}, {"name": "capped", "deployments": [dep]},
                      {"name": "cached", "deployments": [dep]},
                      {"name": "slow", "deployments": [{"provider": "simulated", "model": "sim-slow",
                                                        "price": {"input": "1", "output": "2"},
                                                        "settings": {"ttft_ms": 300, "tokens_per_second": 5000}}]}]}
    root = tmp_path_factory.mktemp("replicas")
    (root / "hedgeway.yaml").write_text(yaml.safe_dump(cfg))
    from hedgeway.ledger import open_store

    store = open_store(ledger_url)
    store.migrate()  # once, before the replicas start (as an init job / the first `serve` would)
    store.close()
    ports, procs = [free_port() for _ in range(REPLICAS)], []
    for i, port in enumerate(ports):
        (root / f"r{i}").mkdir()
        log = open(root / f"r{i}.log", "wb")
        procs.append(subprocess.Popen([sys.executable, "-m", "hedgeway", "serve", "--config",
                                       str(root / "hedgeway.yaml"), "--port", str(port)],
                                      cwd=root / f"r{i}", stdout=log, stderr=subprocess.STDOUT))
    lb = None
    try:
        for port, proc in zip(ports, procs):
            wait_ready(port, proc)
        lb = Balancer(ports)
        yield {"lb": lb, "procs": procs, "ports": ports, "admin": admin, "schema": schema, "root": root}
    finally:
        if lb is not None:
            lb.stop()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
        run(delete_prefix(prefix))


def call(port: int, method: str, path: str, body: dict | None = None, key: str = MASTER):
    """(status, request id, json) — status 0 when the connection broke."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheader("x-hedgeway-request-id"), json.loads(data) if data else None
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None, None
    finally:
        conn.close()


def cached_call(port: int, body: dict) -> tuple[int, str | None, str | None, str | None]:
    """(status, x-hedgeway-cache, request id, answer text) of one chat call straight to a replica."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        data = json.loads(resp.read())
        return (resp.status, resp.getheader("x-hedgeway-cache"), resp.getheader("x-hedgeway-request-id"),
                data["choices"][0]["message"]["content"])
    finally:
        conn.close()


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 5}


def load(lb: Balancer, n: int, body: dict, key: str = MASTER, workers: int = 9) -> list[tuple]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda _: call(lb.port, "POST", "/v1/chat/completions", body, key), range(n)))


def test_three_replicas_share_keys_budgets_limits_and_one_ledger(cluster):
    lb, admin, schema = cluster["lb"], cluster["admin"], cluster["schema"]
    answered: list[tuple] = []

    # 1. A key created through one replica, with a total budget of ~5 requests, used through all of them.
    status, _, key = call(lb.port, "POST", "/admin/keys",
                          {"name": "shared", "budgets": [{"limit": "0.000025", "period": "total"}]})
    assert status in (200, 201), key
    time.sleep(1.0)  # the other replicas' key rings poll every 0.25 s
    before = dict(lb.hits)
    results = load(lb, 24, chat("gpt-4o-mini"), key=key["key"], workers=3)
    answered += results
    statuses = [r[0] for r in results]
    assert 0 not in statuses and set(statuses) <= {200, 429} and statuses.count(429) >= 1
    assert all(lb.hits[p] - before[p] >= 5 for p in lb.ports)  # every replica took a share
    time.sleep(0.3)  # ledger flush interval is 20 ms
    spent = admin.execute(f"SELECT coalesce(sum(cost), 0) FROM {schema}.requests WHERE key_id = %s",
                          (key["id"],)).fetchone()[0]
    assert Decimal(0) < Decimal(spent) <= Decimal("0.000025")

    # 2. rpm 10 on a model, enforced across the three replicas.
    results = load(lb, 30, chat("capped"), workers=10)
    answered += results
    assert [r[0] for r in results].count(200) == 10 and [r[0] for r in results].count(429) == 20

    # 3. One cache, shared in Redis: answered upstream through the first replica, from cache on the others.
    body = {**chat("cached"), "messages": [{"role": "user", "content": f"shared question {schema}"}]}
    first = cached_call(cluster["ports"][0], body)
    time.sleep(0.1)  # the answer is stored after the response (and reaches the others' key indexes then)
    others = [cached_call(port, body) for port in cluster["ports"][1:]]
    assert first[:2] == (200, "miss") and [o[:2] for o in others] == [(200, "hit-exact")] * 2
    assert all(o[3] == first[3] for o in others)
    answered += [(o[0], o[2], None) for o in [first, *others]]
    time.sleep(0.3)
    rows = admin.execute(f"SELECT cache, cost, saved FROM {schema}.requests WHERE request_id = ANY(%s) "
                         "ORDER BY ts", ([o[2] for o in [first, *others]],)).fetchall()
    assert [r[0] for r in rows] == ["miss", "hit-exact", "hit-exact"]
    assert Decimal(rows[0][1]) > 0 and all(Decimal(r[1]) == 0 and Decimal(r[2]) == Decimal(rows[0][1])
                                           for r in rows[1:])

    # 4. SIGTERM one replica while 300 ms requests are in flight on all three.
    victim, victim_port = cluster["procs"][0], cluster["ports"][0]
    before = lb.hits[victim_port]
    signalled: list[float] = []

    def kill():
        signalled.append(time.monotonic())
        victim.send_signal(signal.SIGTERM)

    timer = threading.Timer(0.5, kill)
    timer.start()
    results = load(lb, 45, chat("slow"), workers=9)
    answered += results
    assert victim.wait(20) == 0  # drained and flushed, clean exit
    ok = [r for r in results if r[0] == 200]
    # it had requests in flight when the signal came, and served them to the end (>= 300 ms each)
    spanning = [(a, b) for port, a, b in lb.spans if port == victim_port and a < signalled[0] < b]
    assert lb.hits[victim_port] > before and spanning
    assert all(b - a >= 0.3 for a, b in spanning)
    # The victim finished its in-flight requests; connections it refused after closing its listener went
    # to the others. Only a connection caught in its accept backlog at that instant may break (status 0,
    # never admitted, so no ledger record is owed).
    assert {r[0] for r in results} <= {200, 0} and len(ok) >= len(results) - 3, [r[0] for r in results]

    # Stop the rest (SIGTERM: drain + flush), then audit the one ledger.
    for proc in cluster["procs"][1:]:
        proc.send_signal(signal.SIGTERM)
    for proc in cluster["procs"][1:]:
        assert proc.wait(20) == 0
    rows = admin.execute(f"SELECT request_id, count(*) FROM {schema}.requests GROUP BY request_id").fetchall()
    ids = {rid: n for rid, n in rows}
    assert all(n == 1 for n in ids.values())  # never double-counted
    answered_ids = [rid for status, rid, _ in answered if rid is not None]
    assert len(answered_ids) == len(set(answered_ids))
    assert set(answered_ids) <= set(ids)  # every answer — 200 or refusal — is in the ledger
    assert all(rid is not None for status, rid, _ in answered if status in (200, 429))
