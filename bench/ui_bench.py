"""How fast the dashboard's JSON endpoints answer on a big ledger.

Seeds N rows (default 1,000,000, spread over 90 days, 6 models, 8 teams, 200 keys, 3 tiers, cache outcomes,
5% errors) into a temporary SQLite ledger through the store's write path (SQLiteStore.write, batches of
20k), starts a real gateway on that ledger, and times every /ui/api endpoint over HTTP (median of
--repeat calls, after one warm-up call).

    python bench/ui_bench.py [--rows 1000000] [--repeat 5] [--since 30d] [--db seeded.db]
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import orjson

from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.ledger import Record, SQLiteStore

MASTER = "sk-bench-master"
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku", "claude-sonnet", "llama-70b", "auto"]
CACHE = ["miss", "miss", "miss", "hit-exact", "hit-semantic", "bypass", None]
TIERS = ["cheap", "mid", "strong"]


def records(n: int, now: float, rng: random.Random):
    for i in range(n):
        model = rng.choice(MODELS)
        err = rng.random() < 0.05
        cache = rng.choice(CACHE)
        hit = cache is not None and cache.startswith("hit")
        cost = Decimal(rng.randrange(0, 500000)) / Decimal(10 ** 9)
        route = orjson.dumps({"router": "tiers", "tier": rng.choice(TIERS)}).decode() if model == "auto" else None
        yield Record(request_id=f"r{i}", ts=now - rng.random() * 90 * 86400, endpoint="chat", model_name=model,
                     deployment=f"{model}-{rng.randrange(2)}", provider="openai", status=500 if err else 200,
                     key_id=f"key-{rng.randrange(200)}", team=f"team-{rng.randrange(8)}",
                     error_type="api_error" if err else None, prompt_tokens=rng.randrange(2000),
                     completion_tokens=rng.randrange(500), cost=Decimal(0) if hit or err else cost,
                     latency_ms=rng.lognormvariate(6, 0.6), ttft_ms=rng.lognormvariate(5, 0.5), route=route,
                     cache=cache, saved=cost if hit else Decimal(0))


def seed(path: Path, n: int) -> float:
    store = SQLiteStore(path)
    store.migrate()
    started = time.perf_counter()
    batch: list[Record] = []
    for rec in records(n, time.time(), random.Random(7)):
        batch.append(rec)
        if len(batch) == 20000:
            store.write(batch)
            batch = []
    store.write(batch)
    store.close()
    return time.perf_counter() - started


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("GET", path, headers={"Authorization": f"Bearer {MASTER}"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--since", default="30d")
    ap.add_argument("--db", help="an already seeded ledger file to reuse (skips seeding)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "ledger.db"
        if not args.db:
            print(f"seeding {args.rows} rows ... {seed(db, args.rows):.1f} s")
        cfg = {"auth": {"master_key": MASTER}, "ledger": {"url": f"sqlite:///{db}"},
               "models": [{"name": m, "deployments": [{"provider": "simulated", "model": m}]} for m in MODELS]}
        paths = [f"/ui/api/spend?by=model&period=day&since={args.since}",
                 f"/ui/api/spend?by=key&period=week&since={args.since}",
                 "/ui/api/spend?by=team&period=month&since=all",
                 f"/ui/api/routes?since={args.since}", f"/ui/api/cache?since={args.since}",
                 f"/ui/api/latency?since={args.since}", f"/ui/api/errors?since={args.since}",
                 "/ui/api/latency?since=all", "/ui/api/spend?by=model&period=day&since=24h",
                 "/ui/api/latency?since=24h", "/ui/api/live"]
        with BackgroundGateway(from_dict(cfg)) as gw:
            print(f"{'endpoint':55} {'median ms':>10} {'min ms':>8} {'bytes':>8}")
            for path in paths:
                status, body = get(gw.port, path)  # warm-up (page cache, lazy connection)
                assert status == 200, (status, body[:200])
                times = []
                for _ in range(args.repeat):
                    t = time.perf_counter()
                    get(gw.port, path)
                    times.append((time.perf_counter() - t) * 1000)
                print(f"{path:55} {statistics.median(times):10.1f} {min(times):8.1f} {len(body):8}")


if __name__ == "__main__":
    main()
