"""The offline embedder (all-MiniLM-L6-v2 int8 ONNX): load time, RSS, per-prompt latency, batch throughput.

    python bench/cache_embedder.py [--data ../shared/data/cache/qqp/similar_qqp_full_labeled_pairs.json] [--n 1000]

Prompts are QQP questions (realistic short queries). Figures quoted in bench/README.md (## Cache).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/cache/qqp/similar_qqp_full_labeled_pairs.json")
    ap.add_argument("--n", type=int, default=1000)
    args = ap.parse_args()
    with open(args.data) as f:
        texts = [r["text_a"] for r in json.load(f)[: args.n]]
    import numpy  # noqa: F401  (not part of the model's own cost)
    base = rss_mb()
    t = time.perf_counter()
    from hedgeway.embedders import MiniLM
    for threads in (1, 2):
        t = time.perf_counter()
        m = MiniLM(threads=threads)
        load = time.perf_counter() - t
        m.embed_sync(texts[:8])
        single = []
        for s in texts[:300]:
            t = time.perf_counter()
            m.embed_sync([s])
            single.append(time.perf_counter() - t)
        single.sort()
        print(f"threads={threads}: load {load * 1000:.0f} ms, RSS +{rss_mb() - base:.0f} MB, "
              f"one prompt p50 {statistics.median(single) * 1000:.2f} ms p99 {single[int(len(single) * .99)] * 1000:.2f} ms")
        ordered = sorted(texts, key=len)  # batches of similar length pad less
        for batch in (1, 16, 64):
            t = time.perf_counter()
            for i in range(0, len(ordered), batch):
                m.embed_sync(ordered[i:i + batch])
            dt = time.perf_counter() - t
            print(f"  batch {batch:3d}: {len(ordered) / dt:7.0f} prompts/s")


if __name__ == "__main__":
    main()
