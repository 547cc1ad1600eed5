"""Cache benchmarks: index search at scale, hit latency through the HTTP API, intent workloads.

    python bench/cache_bench.py search                       # 1k/10k/100k entries in one bucket (exact / HNSW)
    python bench/cache_bench.py http [--n 2000]              # exact and semantic hits end to end (keep-alive client)
    python bench/cache_bench.py clinc [--data ../shared/data/cache/clinc150/data_full.json]
    python bench/cache_bench.py banking [--data ../shared/data/cache/banking77]
    python bench/cache_bench.py redis-sync                   # a replica's first load and re-sync of a shared bucket

clinc: insert CLINC150's in-scope training queries, query the out-of-scope test queries (all should miss)
and the in-scope test queries (hit rate; share of hits whose matched entry has the query's intent).
banking: insert Banking77 training queries, replay the test queries: hit rate and right-intent share.
Both use `hedgeway cache bench`'s code (the gateway's lookup with the default config's threshold unless
--threshold). Quote medians; the machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from types import SimpleNamespace

import numpy as np


def bench_search(args) -> None:
    from decimal import Decimal

    from hedgeway.cache.backends import MemoryBackend
    from hedgeway.cache.entry import Entry
    from hedgeway.types import Usage

    rng = np.random.default_rng(0)
    for n in (1_000, 10_000, 100_000):
        be = MemoryBackend(n + 1, ann=args.ann)
        vecs = rng.standard_normal((n, 384)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        e = Entry(b"{}", Usage(), Decimal(0))

        async def go(n=n, be=be, e=e, vecs=vecs):
            t = time.perf_counter()
            for i in range(n):
                await be.put(f"k{i}", e, 3600, "B", vecs[i])
            be.buckets["B"].ready()  # the index is built on a worker thread: measure it, not the exact fallback
            build = time.perf_counter() - t
            await be.search("B", vecs[0], 0.9)  # builds the matrix once
            times, found = [], 0
            for i in range(500):
                q = vecs[(i * 7919) % n]
                t = time.perf_counter()
                hit = await be.search("B", q, 0.9)
                times.append(time.perf_counter() - t)
                found += hit is not None  # HNSW is approximate: a missed self-match is a cache miss
            times.sort()
            kind = "hnsw" if be.buckets["B"]._ann is not None else "exact"
            print(f"{kind} search {n:>7} entries (inserted in {build:.1f} s): p50 {statistics.median(times) * 1e3:.3f} ms, "
                  f"p99 {times[int(len(times) * .99)] * 1e3:.3f} ms, self-recall {found / len(times):.3f}")
        asyncio.run(go())


def bench_http(args) -> None:
    from hedgeway.config import from_dict
    from hedgeway.http.background import BackgroundGateway

    key = "sk-bench"
    cfg = {"auth": {"master_key": key}, "ledger": {"url": f"sqlite:///{tempfile.mkdtemp()}/l.db", "spool_path": None},
           "cache": {"enabled": True, "threshold": 0.9},
           "models": [{"name": "sim", "deployments": [{"provider": "simulated", "model": "sim-1",
                                                      "price": {"input": "1", "output": "2"},
                                                      "settings": {"ttft_ms": 20, "tokens_per_second": 2000}}]}]}
    with BackgroundGateway(from_dict(cfg)) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port)

        def post(text):
            body = json.dumps({"model": "sim", "temperature": 0, "messages": [{"role": "user", "content": text}]})
            t = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}",
                                                                 "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            return time.perf_counter() - t, r.getheader("x-hedgeway-cache"), float(r.getheader("x-hedgeway-overhead-ms"))

        post("How do I reset my password?")
        time.sleep(0.2)
        for label, text, want in (("exact", "How do I reset my password?", "hit-exact"),
                                  ("semantic", "How can I reset my password?", "hit-semantic")):
            lat, over = [], []
            for _ in range(args.n if label == "exact" else max(args.n // 4, 50)):
                dt, status, overhead = post(text)
                assert status == want, status
                lat.append(dt * 1e3)
                over.append(overhead)
            lat.sort()
            print(f"{label} hit through HTTP: client p50 {statistics.median(lat):.3f} ms, p99 {lat[int(len(lat) * .99)]:.3f} ms; "
                  f"gateway-measured p50 {statistics.median(over):.3f} ms")
        miss = sorted(post(f"a new question number {i}?")[0] * 1e3 for i in range(50))
        print(f"miss (embedding + lookup + 20 ms simulated upstream): client p50 {statistics.median(miss):.3f} ms")


def _replay(inserts, queries, threshold):
    from hedgeway.cache.config import CacheIn
    from hedgeway.cache.replay import run
    from hedgeway.embedders import MiniLM

    d = tempfile.mkdtemp()
    paths = {}
    for name, rows in (("a", inserts), ("b", queries)):
        paths[name] = os.path.join(d, f"{name}.jsonl")
        with open(paths[name], "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    out = os.path.join(d, "r.jsonl")
    section = CacheIn(enabled=True, **({"threshold": threshold} if threshold else {}))
    run(SimpleNamespace(insert=paths["a"], query=paths["b"], output=out), None, section, MiniLM(), sys.stdout)
    with open(out) as f:
        return [json.loads(line) for line in f]


def _intent_report(name, results, intent_of_insert, intent_of_query):
    hits = [r for r in results if r["hit"]]
    right = sum(intent_of_insert[r["matched_id"]] == intent_of_query[r["id"]] for r in hits)
    print(f"{name}: {len(results)} queries, hit rate {len(hits) / len(results):.4f}, "
          f"right intent {right}/{len(hits)} = {right / max(len(hits), 1):.4f}")


def bench_clinc(args) -> None:
    with open(args.data) as f:
        data = json.load(f)
    train = data["train"][: args.limit] if args.limit else data["train"]
    inserts = [{"id": f"t{i}", "prompt": q} for i, (q, _) in enumerate(train)]
    intent = {f"t{i}": c for i, (_, c) in enumerate(train)}
    oos = [{"id": f"o{i}", "prompt": q} for i, (q, _) in enumerate(data["oos_test"])]
    test = [{"id": f"s{i}", "prompt": q} for i, (q, _) in enumerate(data["test"])]
    qintent = {f"s{i}": c for i, (_, c) in enumerate(data["test"])}
    results = _replay(inserts, oos + test, args.threshold)
    oos_res = [r for r in results if r["id"].startswith("o")]
    print(f"CLINC150 out-of-scope: {len(oos_res)} queries, miss rate {1 - sum(r['hit'] for r in oos_res) / len(oos_res):.4f}")
    _intent_report("CLINC150 in-scope test", [r for r in results if r["id"].startswith("s")], intent, qintent)


def bench_banking(args) -> None:
    def rows(name):
        with open(os.path.join(args.data, name), newline="") as f:
            return list(csv.DictReader(f))
    train, test = rows("train.csv"), rows("test.csv")
    inserts = [{"id": f"t{i}", "prompt": r["text"]} for i, r in enumerate(train)]
    queries = [{"id": f"q{i}", "prompt": r["text"]} for i, r in enumerate(test)]
    results = _replay(inserts, queries, args.threshold)
    _intent_report("Banking77 test after train", results, {f"t{i}": r["category"] for i, r in enumerate(train)},
                   {f"q{i}": r["category"] for i, r in enumerate(test)})


def bench_redis_sync(args) -> None:
    """Redis backend, one bucket of 10k / 100k random vectors written by replica A: how long replica B's
    first lookup takes (reads every vector), and its lookup after A wrote one more entry (reads the
    bucket's keys and the one new vector). Uses its own key prefix on 127.0.0.1:6379, deleted after."""
    import uuid
    from decimal import Decimal

    import redis

    from hedgeway.cache.entry import Entry
    from hedgeway.cache.redis_backend import RedisBackend
    from hedgeway.types import Usage

    url, prefix = "redis://127.0.0.1:6379/0", f"hw-bench-sync-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(0)
    e = Entry(b'{"choices":[{}]}', Usage(), Decimal(0))
    try:
        for n in (10_000, 100_000):
            vecs = rng.standard_normal((n + 1, 384)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            r = redis.Redis.from_url(url)
            pipe = r.pipeline(transaction=False)  # A's n writes, in bulk
            for i in range(n):
                pipe.set(f"{prefix}:e:{n}-{i}", e.dumps(), ex=3600)
                pipe.hset(f"{prefix}:b:B{n}", f"{n}-{i}", vecs[i].tobytes())
            pipe.set(f"{prefix}:v:B{n}", "v1")
            pipe.execute()

            async def go(n=n, vecs=vecs):
                a, b = (RedisBackend(url, prefix, 10 * n, ann=args.ann) for _ in range(2))
                t = time.perf_counter()
                await b.search(f"B{n}", vecs[0], 0.9)
                first = time.perf_counter() - t
                await a.put(f"{n}-new", e, 3600, f"B{n}", vecs[n])
                t = time.perf_counter()
                found = await b.search(f"B{n}", vecs[n], 0.9)
                again = time.perf_counter() - t
                async def p50():  # lookups (hits) on the unchanged bucket: version GET, search, entry GET
                    times = []
                    for i in range(1, 201):
                        t = time.perf_counter()
                        await b.search(f"B{n}", vecs[i], 0.9)
                        times.append(time.perf_counter() - t)
                    return statistics.median(times)

                quiet = await p50()
                t = time.perf_counter()
                b.local[f"B{n}"][1].ready()
                built = time.perf_counter() - t
                indexed = await p50()
                print(f"redis bucket {n:>7}: first lookup on a replica {first * 1e3:,.0f} ms; after another replica's "
                      f"write {again * 1e3:.1f} ms (new entry found: {found is not None}); then p50 {quiet * 1e3:.2f} ms"
                      + (f"; index ready {built:.1f} s later, then p50 {indexed * 1e3:.2f} ms" if args.ann else ""))
                await a.close()
                await b.close()
            asyncio.run(go())
            r.close()
    finally:
        r = redis.Redis.from_url(url)
        for k in r.scan_iter(match=f"{prefix}:*", count=1000):
            r.delete(k)
        r.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["search", "http", "clinc", "banking", "redis-sync"])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--data")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threshold", type=float)
    ap.add_argument("--ann", action="store_true", help="search: HNSW buckets (needs usearch)")
    args = ap.parse_args()
    if args.data is None:
        args.data = {"clinc": "../shared/data/cache/clinc150/data_full.json",
                     "banking": "../shared/data/cache/banking77"}.get(args.what)
    {"search": bench_search, "http": bench_http, "clinc": bench_clinc, "banking": bench_banking,
     "redis-sync": bench_redis_sync}[args.what](args)


if __name__ == "__main__":
    main()
