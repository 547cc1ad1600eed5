"""The semantic cache's own path (lookup, then store on a miss) through `ResponseCache`, without HTTP:
process CPU per request (event loop and embedder thread together), hits and misses, embedded texts.

    python bench/semantic_path.py tickets [--backend memory|redis] [--n 2000] [--concurrency 16]
    python bench/semantic_path.py mix [--backend memory|redis] [--n 3000] [--data ../shared/data/cache/banking77]
    python bench/semantic_path.py mix --backend redis --replicas 2     # two replicas sharing the buckets
    python bench/semantic_path.py other [--n 3000] [--nice-only --nice 10]   # a model without the semantic cache

tickets: the load test's `--unique` bodies (system prompt, a fixed question ending "Ticket <run>-<i>."): every
request is a miss, each in its own fingerprint bucket (the numbers of the last turn are part of it).
mix: Banking77 train and test questions drawn at random (seed 0), so the same questions come back in other
wordings; a miss is stored like the gateway does. Prints the share of semantic hits whose entry has the
query's intent. other: a client process sends `--n` requests (one in flight, over TCP) for a model whose
semantic cache is off, alone and while Banking77 questions (each one embedded) go to a semantic model in
the same process: the first's round-trip p50/p99, with the embedding thread under SCHED_IDLE (the
default) or, with --nice-only, at nice +`--nice`.
Redis: 127.0.0.1:6379, own key prefix, deleted after. Pin to one core (taskset -c 1) to see a one-core
gateway; quote medians of a few runs.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import statistics
import time
import uuid
from decimal import Decimal

import orjson

from hedgeway.cache.backends import BACKENDS
from hedgeway.cache.config import CacheIn
from hedgeway.cache.service import ResponseCache
from hedgeway.embedders import shared_minilm
from hedgeway.types import ChatRequest, Principal, Usage

PRINCIPAL = Principal("bench-key", team="bench")
SYSTEM = "You are a helpful assistant. Answer concisely."
QUESTION = ("Explain in two sentences what an API gateway does and why latency overhead matters for LLM "
            "applications.")


def ticket(model: str, run: str, i: int) -> ChatRequest:
    body = {"model": model, "temperature": 0.2, "max_tokens": 128,
            "messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": f"{QUESTION} Ticket {run}-{i}."}]}
    return ChatRequest(model=model, body=body)


def plain(model: str, text: str) -> ChatRequest:
    return ChatRequest(model=model, body={"model": model, "temperature": 0,
                                          "messages": [{"role": "user", "content": text}]})


def answer(tag: str) -> bytes:
    return orjson.dumps({"id": "b", "object": "chat.completion", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": tag}, "finish_reason": "stop"}]})


class Counting:
    """The embedder, counting the texts it is asked to embed (calls through `embed` only)."""

    def __init__(self, inner):
        self.inner, self.name, self.texts, self.calls = inner, inner.name, 0, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def embed(self, texts, whole_only=False):
        self.texts += len(texts)
        self.calls += 1
        return await self.inner.embed(texts, whole_only)


def make_cache(args, section: CacheIn) -> tuple[ResponseCache, Counting]:
    emb = Counting(shared_minilm())
    return ResponseCache(section, BACKENDS[section.backend](section), emb), emb


def section(args, **kw) -> CacheIn:
    return CacheIn(enabled=True, backend=args.backend, prefix=args.prefix, max_entries=max(args.n * 2, 10_000), **kw)


async def drive(cache, reqs: list[tuple[ChatRequest, str]], concurrency: int) -> dict:
    """Each request: lookup, and store on a miss. Returns counts and the matched tags of semantic hits.
    `cache` may be a list (replicas sharing Redis): the concurrent workers take turns over them."""
    caches = cache if isinstance(cache, list) else [cache]
    counts = {"hit-exact": 0, "hit-semantic": 0, "miss": 0, "bypass": 0}
    pairs: list[tuple[str, str]] = []  # (query tag, matched entry's tag) of semantic hits
    it = iter(reqs)

    async def worker(cache):
        for req, tag in it:
            lk = await cache.lookup(PRINCIPAL, req)
            counts[lk.status] += 1
            if lk.hit is None:
                await asyncio.sleep(0)  # the upstream call: others run meanwhile
                cache.store(lk, answer(tag), Usage(10, 5), Decimal("0.0001"))
            elif lk.status == "hit-semantic":
                pairs.append((tag, orjson.loads(lk.hit.body)["choices"][0]["message"]["content"]))

    await asyncio.gather(*(worker(caches[i % len(caches)]) for i in range(concurrency)))
    for c in caches:
        await c.drain()
    return {"counts": counts, "pairs": pairs}


def measure(args, reqs, label, **kw) -> dict:
    async def go():
        cache, emb = make_cache(args, section(args, **kw))
        replicas = [cache] + [ResponseCache(cache.cfg, BACKENDS[args.backend](cache.cfg), emb)
                              for _ in range(args.replicas - 1)]
        await drive(cache, [(ticket("warm", "w", i), "w") for i in range(8)], 1)  # load the model, warm up
        emb.texts = emb.calls = 0
        computed = getattr(emb.inner, "computed", 0)
        t, c = time.perf_counter(), time.process_time()
        out = await drive(replicas, reqs, args.concurrency)
        out["wall"], out["cpu"] = time.perf_counter() - t, time.process_time() - c
        out["texts"], out["calls"] = emb.texts, emb.calls
        out["computed"] = getattr(emb.inner, "computed", 0) - computed
        if hasattr(cache.backend, "clear"):
            await cache.backend.clear()
        for r in replicas:
            await r.close()
        return out
    out = asyncio.run(go())
    n = len(reqs)
    label += f" x{args.replicas} replicas" if args.replicas > 1 else ""
    print(f"{label} [{args.backend}, c={args.concurrency}]: {n} requests, CPU {out['cpu'] * 1e3 / n:.3f} ms/req, "
          f"wall {out['wall'] * 1e3 / n:.3f} ms/req; {out['counts']}; embedded {out['texts']} texts "
          f"in {out['calls']} calls ({out['computed']} run through the model)")
    return out


def bench_tickets(args) -> None:
    run = uuid.uuid4().hex[:6]
    measure(args, [(ticket("gpt-4o-mini", run, i), str(i)) for i in range(args.n)], "tickets (all misses)")


def bench_mix(args) -> None:
    rows = []
    for name in ("train.csv", "test.csv"):
        with open(os.path.join(args.data, name), newline="") as f:
            rows += list(csv.DictReader(f))
    rng = random.Random(0)
    picked = [rng.choice(rows) for _ in range(args.n)]
    out = measure(args, [(plain("gpt-4o-mini", r["text"]), r["category"]) for r in picked], "banking77 mix")
    pairs = out["pairs"]
    right = sum(q == m for q, m in pairs)
    print(f"  semantic hits with the query's intent: {right}/{len(pairs)} = {right / max(len(pairs), 1):.4f}")


def _client(port: int, n: int, out) -> None:
    """A separate process (on another core when there is one): n requests, one in flight, RTT of each."""
    import socket
    if len(os.sched_getaffinity(0)) == 1 and os.cpu_count() > 1:
        os.sched_setaffinity(0, {c for c in range(os.cpu_count()) if c not in os.sched_getaffinity(0)})
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lat = []
    for i in range(n):
        t = time.perf_counter()
        sock.sendall(b"%d\n" % i)
        while not sock.recv(64).endswith(b"\n"):
            pass
        lat.append(time.perf_counter() - t)
        time.sleep(0.001)
    sock.close()
    out.put(lat)


def bench_other(args) -> None:
    """A model without the semantic cache, served by this event loop to a client process over TCP (one
    request in flight: lookup + store, then the reply), alone and while paraphrase traffic (each request
    embedded: a non-empty bucket) runs beside it. --nice sets the embedding thread's nice increment."""
    import multiprocessing as mp

    try:
        import hedgeway.cache.embed_worker as embed_worker
        embed_worker.EMBED_NICE, embed_worker.EMBED_IDLE = args.nice, not args.nice_only
    except ImportError:  # a tree from before the worker (a before/after sitting): normal priority
        args.nice_only, args.nice = True, 0
    rows = []
    with open(os.path.join(args.data, "train.csv"), newline="") as f:
        rows = [r["text"] for r in csv.DictReader(f)]

    async def go(beside: bool):
        cache, _ = make_cache(args, section(args, models={"plain": {"semantic": False}}))
        await drive(cache, [(plain("gpt-4o-mini", rows[i]), "w") for i in range(8)], 1)
        run, stop = uuid.uuid4().hex[:6], asyncio.Event()

        async def serve(reader, writer):
            while line := await reader.readline():
                lk = await cache.lookup(PRINCIPAL, ticket("plain", run, int(line)))
                cache.store(lk, answer("p"), Usage(1, 1), Decimal(0))
                writer.write(b"ok\n")
            writer.close()

        async def semantic():
            i = 8
            while not stop.is_set():
                await drive(cache, [(plain("gpt-4o-mini", rows[(i + j) % len(rows)]), "s") for j in range(4)], 4)
                i += 4

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        bg = asyncio.ensure_future(semantic()) if beside else None
        q = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(target=_client, args=(server.sockets[0].getsockname()[1], args.n, q))
        proc.start()
        while (lat := await asyncio.get_running_loop().run_in_executor(None, _get, q)) is None:
            pass
        proc.join()
        stop.set()
        if bg is not None:
            await bg
        server.close()
        await cache.close()
        lat.sort()
        return statistics.median(lat) * 1e3, lat[int(len(lat) * 0.99)] * 1e3
    for beside in (False, True):
        p50, p99 = asyncio.run(go(beside))
        prio = f"nice +{args.nice}" if args.nice_only else "SCHED_IDLE"
        where = f"beside paraphrase traffic, embedder {prio}" if beside else "alone"
        print(f"non-semantic model [{args.backend}] {where}: p50 {p50:.3f} ms, p99 {p99:.3f} ms")


def _get(q):
    import queue
    try:
        return q.get(timeout=1)
    except queue.Empty:
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["tickets", "mix", "other"])
    ap.add_argument("--backend", choices=["memory", "redis"], default="memory")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--replicas", type=int, default=1,
                    help="tickets/mix: this many caches on one backend config (redis: replicas; one process, "
                         "one embedder)")
    ap.add_argument("--data", default="../shared/data/cache/banking77")
    ap.add_argument("--nice", type=int, default=10, help="other: the embedding thread's nice increment when boosted")
    ap.add_argument("--nice-only", action="store_true", help="other: nice +N throughout instead of SCHED_IDLE")
    args = ap.parse_args()
    args.prefix = f"hw-bench-sem-{uuid.uuid4().hex[:8]}"
    {"tickets": bench_tickets, "mix": bench_mix, "other": bench_other}[args.what](args)


if __name__ == "__main__":
    main()
