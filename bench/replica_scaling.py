#!/usr/bin/env python3
"""Requests/s through 1, then 2 `hedgeway serve` replicas sharing Redis (admission: a model RPM limit, so
every request runs the Redis scripts) and PostgreSQL (the ledger), as in the docker-compose topology.

The upstream is the shared harness's nginx mock (instant answers, one worker on core 0); one `wrk` per
replica (concurrency split evenly, i.e. client-side balancing) runs for --duration s after a warm-up.
Nothing is pinned: replicas, Redis, PostgreSQL, nginx and wrk share the machine, which is the point: on a
2-vCPU VM the replicas compete with their own load generator and databases for the same two cores.

    python bench/replica_scaling.py [--replicas 1,2] [--concurrency 32] [--duration 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

from budget_race import KEY, Cluster  # bench/ is on sys.path when run as a script

HARNESS = Path(os.environ.get("HARNESS", "/work/shared/bench"))
MOCK = "http://127.0.0.1:18000/v1"


def wrk(url: str, conns: int, seconds: int) -> subprocess.Popen:
    env = {**os.environ, "BENCH_MODEL": "fast", "BENCH_AUTH": KEY}
    return subprocess.Popen(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "30s",
                             "-s", str(HARNESS / "chat.lua"), url], env=env, stdout=subprocess.PIPE, text=True)


def measure(replicas: int, concurrency: int, duration: int) -> tuple[float, int]:
    """(requests/s summed over replicas, non-2xx + socket errors)."""
    limits = {"models": {"fast": {"rpm": 10 ** 9}}}
    with Cluster(replicas, limits, upstream=MOCK) as cluster:
        bases = [u.removesuffix("/v1/chat/completions") for u in cluster.urls]
        for p in [wrk(b, max(1, concurrency // replicas), 2) for b in bases]:  # warm-up
            p.communicate()
        outs = [p.communicate()[0] for p in [wrk(b, max(1, concurrency // replicas), duration) for b in bases]]
    rps = errors = 0
    for out in outs:
        fields = dict(re.findall(r"(\w+)=([\d.]+)", out.split("WRKRESULT", 1)[1]))
        rps += float(fields["rps"])
        errors += sum(int(float(fields[k])) for k in fields if k.startswith("err_"))
    return rps, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicas", default="1,2")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    subprocess.run([str(HARNESS / "start_mock.sh"), "0"], check=True, stdout=subprocess.DEVNULL)
    try:
        counts = [int(n) for n in a.replicas.split(",")]
        runs: dict[int, list[float]] = {n: [] for n in counts}
        for r in range(a.repeats):  # interleaved, so drift on a shared machine hits every count alike
            for n in counts:
                rps, errors = measure(n, a.concurrency, a.duration)
                runs[n].append(rps)
                print(f"repeat {r + 1}: {n} replica(s) {rps:,.0f} req/s, {errors} errors", flush=True)
                time.sleep(1)
    finally:
        subprocess.run([str(HARNESS / "stop_all.sh")], stdout=subprocess.DEVNULL)
    base = statistics.median(runs[counts[0]])
    print(f"\n| replicas | req/s (median of {a.repeats}) | per replica | vs {counts[0]} |\n|---|---|---|---|")
    for n in counts:
        med = statistics.median(runs[n])
        print(f"| {n} | {med:,.0f} | {med / n:,.0f} | {med / base:.2f}× |")


if __name__ == "__main__":
    main()
