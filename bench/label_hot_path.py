"""What labelling adds to the request path: the cost of `Learner.after` per request (the only labelling
work done before the response is sent), on a route without `learn` (feedback only: the request is
remembered) and on a route with `learn` whose sample missed (share 1e-9) or hit (share 1: a background task
is scheduled; its work runs after the response and is not counted here).

    python bench/label_hot_path.py        # prints median ns per call over 5 runs of 50,000 calls, and `uptime`
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from types import SimpleNamespace

from hedgeway.config import from_dict
from hedgeway.routing.learner import Learner
from hedgeway.types import ChatRequest, Principal

N, RUNS = 50_000, 5


def config(learn: dict | None) -> object:
    sim = {"provider": "simulated", "model": "m", "price": {"input": "1", "output": "1"}}
    route = {"name": "auto", "tiers": {"simple": "weak", "complex": "strong"}}
    if learn:
        route["learn"] = {"judge": "strong", "daily_budget": "1", "max_in_flight": N * RUNS, **learn}
    return from_dict({"auth": {"disabled": True}, "ledger": {"url": "sqlite://:memory:"},
                      "router": {"routes": [route]},
                      "models": [{"name": "strong", "deployments": [sim]}, {"name": "weak", "deployments": [sim]}]})


async def measure(learn: dict | None) -> float:
    scheduled = []
    learner = Learner(config(learn), again=None, background=lambda coro: (scheduled.append(coro), coro.close()))
    req = ChatRequest("auto", {"model": "auto", "messages": [{"role": "user", "content": "hello"}]})
    dep = next(iter(learner.model_of))
    medians = []
    for run in range(RUNS):
        ctxs = [SimpleNamespace(request_id=f"r{run}-{i}", route={"tier": "complex"}, principal=Principal("k"))
                for i in range(N)]
        t0 = time.perf_counter_ns()
        for ctx in ctxs:
            learner.after(ctx, req, b"{}", dep)
        medians.append((time.perf_counter_ns() - t0) / N)
    return statistics.median(medians)


def main() -> None:
    for name, learn in (("route without learn (feedback only)", None), ("learn, not sampled", {"share": 1e-9}),
                        ("learn, sampled (task scheduled)", {"share": 1.0})):
        print(f"{name:<40} {asyncio.run(measure(learn)):8.0f} ns per request")
    print("load:", os.getloadavg())


if __name__ == "__main__":
    main()
