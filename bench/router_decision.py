"""Routing decision time of a proven `trained` route when the request is already embedded (a benchmark).

    python bench/router_decision.py [--sharegpt ../shared/data/workload/sharegpt/ShareGPT_V3_filtered_1000.json]
                                    [--n 1000]

A proven artefact (all three feature blocks: MiniLM embedding, hashed n-grams, cues) is trained on
made-up labels whose outcome depends on the text; then `Planner.plan("auto", body, embedding=vec)` — the
whole decision: prompt features, the linear score, its rank, tier, health filter — is timed on real
ShareGPT first turns whose MiniLM vectors were computed beforehand (as the semantic cache does before
the plan). Prints p50 / p99 / max in ms, one pass as measured, and per prompt the best of 5.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from hedgeway.routing import Planner  # noqa: E402
from hedgeway.routing.config import RouteIn, RouterIn  # noqa: E402
from hedgeway.routing.labelled import minilm_embed  # noqa: E402
from hedgeway.routing.proof import train_from_labels  # noqa: E402
from hedgeway.types import Deployment, PriceCard  # noqa: E402


def artefact(path: Path) -> None:
    rng = np.random.default_rng(0)
    hard = ["Prove the theorem about {} step by step.", "Implement a {} parser in Rust and explain it.",
            "Derive the {} recurrence and prove it by induction."]
    easy = ["What colour is a {}?", "Say hello to my {}.", "Give me a synonym for {}."]
    words = ["apple", "river", "graph", "lantern", "violin", "tiger", "harbour", "pencil"]
    rows = []
    for i in range(300):
        h = i % 2 == 0
        text = (hard if h else easy)[rng.integers(3)].format(words[rng.integers(len(words))])
        rows.append({"id": i, "prompt": text, "strong_wins": float(rng.random() < (0.9 if h else 0.3))})
    report, model, _ = train_from_labels(rows, permutations=40, curve_points=False)
    assert report["proven"], report
    model.save(path, "bench")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sharegpt", default=str(Path(__file__).resolve().parents[2] /
                                              "shared/data/workload/sharegpt/ShareGPT_V3_filtered_1000.json"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--model", default="/tmp/router-decision.npz")
    args = ap.parse_args()
    artefact(Path(args.model))
    convs = json.loads(Path(args.sharegpt).read_text())
    prompts = [c["conversations"][0]["value"] for c in convs if c.get("conversations")][:args.n]
    vecs = minilm_embed(prompts)
    models = {m: (Deployment(id=m, model_name=m, provider="openai", model=m,
                             price=PriceCard(Decimal(p), Decimal(p))),) for m, p in (("s", "0.1"), ("l", "10"))}
    planner = Planner(models, {}, "least-in-flight", RouterIn(routes=[RouteIn(
        name="auto", router="trained", tiers={"simple": "s", "complex": "l"}, options={"model": args.model})]))
    bodies = [{"model": "auto", "messages": [{"role": "user", "content": p}]} for p in prompts]
    for b, v in zip(bodies[:50], vecs):
        planner.plan("auto", b, embedding=v)
    times, best = [], []
    for b, v in zip(bodies, vecs):
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            planner.plan("auto", b, embedding=v)
            runs.append((time.perf_counter() - t) * 1000)
        times.append(runs[0])
        best.append(min(runs))
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(json.dumps({"prompts": len(prompts), "mean_chars": round(float(np.mean([len(p) for p in prompts]))),
                      "p50_ms": round(float(np.percentile(times, 50)), 3),
                      "p99_ms": round(float(np.percentile(times, 99)), 3),
                      "max_ms": round(max(times), 3), "best_of_5_p50_ms": round(float(np.percentile(best, 50)), 3),
                      "best_of_5_p99_ms": round(float(np.percentile(best, 99)), 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
