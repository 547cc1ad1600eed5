"""Soak: a gateway under steady mixed traffic for a long time; does anything grow? (a benchmark, not a test)

    python bench/soak.py --minutes 30 --rate 200 --out bench/results/soak

The gateway runs in a child process (the real server, simulated upstreams, a SQLite ledger) with a
sampler on its own event loop that records every 10 s: RSS, open file descriptors, asyncio tasks, ledger
backlog. This process sends a steady open-loop mix at `--rate` requests/s over keep-alive connections:
30% plain chat, 25% streams, 15% a model whose primary fails 20% of the time (fallbacks), 10% a cached
model (exact and semantic hits on 200 recurring questions in three wordings, 20% fresh questions that
keep the cache's LRU bound of 2,000 entries evicting), 10% unknown model (404), 10% invalid body (400) — and records each request's latency, so every 10-s window has a p99.

Writes <out>.json (samples), <out>.svg (the chart) and prints the verdict: growth of RSS, tasks and
non-socket file descriptors between just after warm-up (mean of the 20-30% window) and the end (mean of
the last 10%), which must stay under 5%. Sockets are judged apart: the load generator opens a new
keep-alive connection whenever none is idle, so the gateway's sockets follow the client's open
connections (`client_conns`); `other_sockets` (sockets minus client connections) must stay flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import orjson

MASTER = "sk-soak-master"
CHILD = r'''
import asyncio, json, os, sys, time
from hedgeway.config import from_dict
from hedgeway.http.app import serve

cfg = json.loads(sys.argv[1])

async def sampler(stop):
    while not stop.is_set():
        rss = int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1]) * 1024
        links = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                links.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:  # closed meanwhile
                pass
        print(json.dumps({"t": time.time(), "rss": rss, "fds": len(links),
                          "sockets": sum(1 for l in links if l.startswith("socket:")),
                          "tasks": len(asyncio.all_tasks())}), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 10)
        except asyncio.TimeoutError:
            pass

async def main():
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    def ready(port):
        print(json.dumps({"port": port}), flush=True)
        loop.create_task(sampler(stop))
    await serve(from_dict(cfg), "127.0.0.1", 0, on_ready=ready, stop=stop)

try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
asyncio.run(main())
'''


def config(ledger: str) -> dict:
    sim = lambda name, **s: {"provider": "simulated", "model": name,  # noqa: E731
                             "price": {"input": "1", "output": "2"},
                             "settings": {"ttft_ms": 20, "tokens_per_second": 400, "max_output_tokens": 40, **s}}
    return {"auth": {"master_key": MASTER}, "ledger": {"url": ledger, "spool_path": None},
            "routing": {"num_retries": 0, "fallbacks": {"flaky": ["chat"]}},
            "cache": {"embedder": "minilm", "threshold": 0.95, "max_entries": 2000,
                      "models": {"cached": {"enabled": True}}},
            "models": [{"name": "chat", "deployments": [sim("sim-chat")]},
                       {"name": "flaky", "deployments": [sim("sim-flaky", failure_rate=0.2)]},
                       {"name": "cached", "deployments": [sim("sim-cached")]}]}


MIX = [(0.30, "chat", False, True), (0.25, "chat", True, True), (0.15, "flaky", False, True),
       (0.10, "cached", False, True), (0.10, "nope", False, True), (0.10, "chat", False, False)]
WORDINGS = ["How do I reset the password of account {k}?", "how do i reset the password of account {k}",
            "Please, how do I reset the password of account {k}?"]


def question(model: str) -> str:
    if model != "cached" or random.random() < 0.2:
        return f"soak {random.random()}"
    return random.choice(WORDINGS).format(k=random.randrange(200))


def pick() -> tuple[str, bool, bool]:
    r = random.random()
    for share, model, stream, valid in MIX:
        if r < share:
            return model, stream, valid
        r -= share
    return MIX[0][1:]


async def one(reader, writer, model: str, stream: bool, valid: bool) -> None:
    body = orjson.dumps({"model": model, "stream": stream, "max_tokens": 20,
                         "messages": [{"role": "user", "content": question(model)}]}) if valid else b"{"
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + MASTER.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\n\r\n" + body)
    head = await reader.readuntil(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)


async def load(port: int, rate: float, seconds: float, latencies: list, conns: list) -> int:
    """Open loop: a request every 1/rate s, each on a free pooled connection (or a new one). `conns` gets
    (time, connections open) at every change, so the gateway's socket count can be told apart from leaks."""
    idle: list = []
    errors = 0
    opened = 0

    async def go():
        nonlocal errors, opened
        if idle:
            conn = idle.pop()
        else:
            conn = await asyncio.open_connection("127.0.0.1", port)
            opened += 1
            conns.append((time.time(), opened))
        t0 = time.perf_counter()
        try:
            await one(*conn, *pick())
        except Exception:
            errors += 1
            conn[1].close()
            opened -= 1
            conns.append((time.time(), opened))
            return
        latencies.append((time.time(), time.perf_counter() - t0))
        idle.append(conn)

    start = time.perf_counter()
    n = 0
    tasks = set()
    while (now := time.perf_counter() - start) < seconds:
        due = n / rate
        if due > now:
            await asyncio.sleep(due - now)
        t = asyncio.create_task(go())
        tasks.add(t)
        t.add_done_callback(tasks.discard)
        n += 1
    await asyncio.gather(*tasks)
    for _, w in idle:
        w.close()
    return errors


def svg(samples: list[dict], path: Path) -> None:
    """A small hand-made chart: RSS (MB), fds, tasks and p99 (ms) over time, each scaled to its max."""
    w, h, pad = 720, 300, 40
    t0, t1 = samples[0]["t"], samples[-1]["t"] or 1
    series = [("rss_mb", "#1f77b4"), ("fds", "#2ca02c"), ("client_conns", "#8c564b"), ("tasks", "#9467bd"),
              ("p99_ms", "#d62728")]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="11"><rect width="{w}" height="{h}" fill="white"/>']
    for i, (key, color) in enumerate(series):
        vals = [s.get(key) or 0 for s in samples]
        top = max(vals) * 1.2 or 1
        pts = " ".join(f"{pad + (s['t'] - t0) / max(t1 - t0, 1) * (w - 2 * pad):.1f},"
                       f"{h - pad - v / top * (h - 2 * pad):.1f}" for s, v in zip(samples, vals))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        out.append(f'<text x="{pad + i * 135}" y="20" fill="{color}">{key} (max {max(vals):.1f})</text>')
    out.append(f'<text x="{pad}" y="{h - 10}">0 s</text><text x="{w - pad - 40}" y="{h - 10}">'
               f'{t1 - t0:.0f} s</text></svg>')
    path.write_text("".join(out))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=float, default=200, help="requests per second")
    ap.add_argument("--out", default="bench/results/soak")
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import tempfile

    ledger = f"sqlite:///{tempfile.mkdtemp(prefix='hedgeway-soak-')}/ledger.db"  # large; not a result
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(config(ledger))], stdout=subprocess.PIPE,
                             text=True)
    port = json.loads(child.stdout.readline())["port"]
    samples: list[dict] = []

    def read_samples():
        for line in child.stdout:
            samples.append(json.loads(line))

    import threading
    threading.Thread(target=read_samples, daemon=True).start()
    latencies: list = []
    conns: list = [(0.0, 0)]
    errors = asyncio.run(load(port, args.rate, args.minutes * 60, latencies, conns))
    child.terminate()
    child.wait(60)
    for s in samples:  # p99 of the requests that finished in the 10 s before each sample
        window = sorted(d for t, d in latencies if s["t"] - 10 <= t < s["t"])
        s["p99_ms"] = window[int(len(window) * 0.99)] * 1000 if window else None
        s["rss_mb"] = s["rss"] / 2**20
        s["files"] = s["fds"] - s["sockets"]  # everything but sockets: ledger, logs, pipes, epoll
        s["client_conns"] = next(c for t, c in reversed(conns) if t <= s["t"])
        s["other_sockets"] = s["sockets"] - s["client_conns"]  # the listener etc.: must stay flat
    import sqlite3

    with sqlite3.connect(ledger.removeprefix("sqlite:///")) as db:  # the cache's outcomes, from the ledger
        cache = dict(db.execute("SELECT cache, count(*) FROM requests WHERE cache IS NOT NULL GROUP BY cache"))
    n = len(samples)
    # Means over a window, not single samples: tasks and fds move with the requests in flight.
    mean = lambda part, k: sum(s[k] for s in part) / len(part)  # noqa: E731
    warm, end = samples[n // 5: max(n // 5 + 1, n * 3 // 10)], samples[-max(1, n // 10):]
    growth = {k: (mean(end, k) - mean(warm, k)) / mean(warm, k) * 100 if mean(warm, k) else 0.0
              for k in ("rss", "files", "tasks")}
    p99s = [s["p99_ms"] for s in samples if s["p99_ms"]]
    verdict = {"minutes": args.minutes, "rate": args.rate, "requests": len(latencies), "client_errors": errors,
               "growth_after_warmup_pct": {k: round(v, 2) for k, v in growth.items()},
               "p99_ms_first_last": [round(p99s[1], 2), round(p99s[-1], 2)] if len(p99s) > 1 else p99s,
               "fds_first_last": [warm[0]["fds"], samples[-1]["fds"]],
               "client_conns_first_last": [warm[0]["client_conns"], samples[-1]["client_conns"]],
               "other_sockets_range": [min(s["other_sockets"] for s in samples[1:]),
                                       max(s["other_sockets"] for s in samples[1:])],
               "cache_outcomes": cache, "ok": all(v < 5 for v in growth.values())}
    Path(f"{out}.json").write_text(json.dumps({"verdict": verdict, "samples": samples}, indent=1))
    svg(samples, Path(f"{out}.svg"))
    print(json.dumps(verdict))
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
