"""`hedgeway demo`: a real gateway on embedded defaults with labelled simulated upstreams, driven by the
official OpenAI SDK. No API keys, no network; exits 0 and prints a summary read back from the ledger.
`--self-hosted` puts a real model (llama.cpp + SmolLM2-135M, hedgeway.selfhost) behind the `simple` tier,
with one slot and the gateway's queue in front of it; exit 1 (saying how to install it) when it is absent."""

from __future__ import annotations

import argparse
import secrets
import statistics
from importlib.resources import files

DEMO_DB = "hedgeway-demo.db"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run a local gateway with simulated upstreams and send it traffic")
    p.add_argument("--requests", type=int, default=None, help="prompts to send (default 300; 60 self-hosted)")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--db", default=f"sqlite:///{DEMO_DB}", help=f"ledger URL (default sqlite:///{DEMO_DB})")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--router-loop", action="store_true", help="instead: a route labelling its own traffic "
                   "(simulated tiers and judge; hedgeway.cli.demo_loop)")
    p.add_argument("--self-hosted", action="store_true",
                   help="route the simple tier to a real local model (llama.cpp + SmolLM2) instead of a simulator")
    p.set_defaults(func=run)


def demo_config(master_key: str, ledger_url: str) -> dict:
    """Three labelled simulated tiers, priced like the models they stand in for, behind one routed name
    (`auto`: the heuristic router sends each prompt to the tier its complexity needs), and the exact cache
    in front (the semantic one needs the `semantic` extra, which the demo does not)."""
    sim = lambda label, ttft, tps, fail=0.0: {"label": label, "ttft_ms": ttft, "tokens_per_second": tps,  # noqa: E731
                                              "failure_rate": fail, "max_output_tokens": 90}
    return {
        "server": {"host": "127.0.0.1", "port": 0},
        "auth": {"master_key": master_key},
        "ledger": {"url": ledger_url, "flush_interval": 0.1},
        "cache": {"enabled": True, "embedder": "none"},
        "routing": {"fallbacks": {"self-hosted": ["cheap"], "cheap": ["premium"]}, "num_retries": 0},
        "router": {"routes": [{"name": "auto", "router": "heuristic",
                               "tiers": {"simple": "self-hosted", "medium": "cheap", "complex": "premium"}}]},
        "models": [
            {"name": "premium", "deployments": [{
                "provider": "simulated", "model": "premium-api", "id": "premium-api (simulated gpt-4o)",
                "price": {"input": "2.50", "cached_input": "1.25", "output": "10.00"},
                "settings": sim("simulated premium API", 300, 120)}]},
            {"name": "cheap", "deployments": [{
                "provider": "simulated", "model": "cheap-api", "id": "cheap-api (simulated gpt-4o-mini)",
                "price": {"input": "0.15", "cached_input": "0.075", "output": "0.60"},
                "settings": sim("simulated cheap API", 150, 250)}]},
            {"name": "self-hosted", "deployments": [{
                "provider": "simulated", "model": "llama-3-8b", "id": "self-hosted (simulated llama-3-8b)",
                "price": {"gpu_hour": "1.10", "gpus": 1, "tokens_per_second": 1500},
                "timeout": 5, "settings": sim("simulated self-hosted", 60, 400, fail=0.04)}]},
        ],
    }


def real_self_hosted(config: dict, base_url: str) -> dict:
    """`config` with the self-hosted tier on the real server at `base_url`: one slot (llama.cpp's default),
    the surplus queued at the gateway and spilled to the cheap tier after 20 s."""
    config["models"][2]["deployments"] = [{
        "provider": "openai", "model": "smollm2", "id": "self-hosted (llama.cpp smollm2-135m)", "api_base": base_url,
        "price": {"gpu_hour": "1.10", "gpus": 1, "tokens_per_second": 1500}, "timeout": 60,
        "max_concurrency": 1, "queue_timeout": 20}]
    return config


def prompts() -> list[str]:
    text = files("hedgeway.data").joinpath("demo_prompts.txt").read_text()
    return [line.replace("\\n", "\n") for line in text.splitlines() if line.strip()]


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run(args: argparse.Namespace) -> int:
    if args.router_loop:
        from hedgeway.cli.demo_loop import run_loop

        return run_loop(args)

    import contextlib
    import sys

    from hedgeway.config import from_dict
    from hedgeway.selfhost import LlamaServer, model_path

    key = "sk-demo-" + secrets.token_hex(8)
    raw, server = demo_config(key, args.db), contextlib.nullcontext()
    if args.self_hosted:
        try:
            model_path()
        except LookupError as exc:
            print(f"hedgeway demo --self-hosted: {exc}", file=sys.stderr)
            return 1
        print("Starting the local model server (llama.cpp, SmolLM2-135M, one thread)…")
        server = LlamaServer()
    with server:
        if args.self_hosted:
            raw = real_self_hosted(raw, server.base_url)
        return _drive(args, key, from_dict(raw))


def _drive(args: argparse.Namespace, key: str, config) -> int:
    """Send the demo's traffic to a gateway on `config`, then print the summary and the verdict."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import openai
    from tqdm import tqdm

    from hedgeway.http.background import BackgroundGateway
    from hedgeway.ledger import open_store

    texts = prompts()
    # After the first 21, every fifth request asks the question of 21 requests before again, as users of one
    # product do (long enough ago to be answered already, even at full concurrency): the cache answers it.
    jobs = [(texts[(i - 21 if i >= 21 and i % 5 == 4 else i) % len(texts)], "auto", i % 4 == 0)
            for i in range(args.requests or (60 if args.self_hosted else 300))]
    extra = {"max_tokens": 64} if args.self_hosted else {}  # a CPU model: short answers keep the demo short
    started_at = time.time()
    kind = "a real self-hosted model and two simulated APIs" if args.self_hosted else \
        "three simulated upstreams (premium API, cheap API, self-hosted)"
    print(f"Hedgeway demo: a gateway on 127.0.0.1 with {kind} behind the routed model `auto`; ledger {args.db}")
    with BackgroundGateway(config) as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)

        def send(job: tuple[str, str, bool]) -> tuple[float, bool]:
            prompt, model, stream = job
            t0 = time.perf_counter()
            try:
                if stream:
                    for _ in client.chat.completions.create(model=model, stream=True, extra_body=extra,
                                                            messages=[{"role": "user", "content": prompt}]):
                        pass
                else:
                    client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                   extra_body=extra)
                return time.perf_counter() - t0, True
            except openai.APIError:
                return time.perf_counter() - t0, False

        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(tqdm(pool.map(send, jobs), total=len(jobs), desc="requests", unit="req",
                                disable=args.no_progress))
    store = open_store(args.db)
    rows = [r for r in store.records(since=started_at - 1)]
    store.close()
    _summary(rows, results, args.db, config.models["premium"][0].price)
    try:
        from hedgeway.economics.planner import verdict
    except ImportError:
        return 0
    print("\nBuild vs buy, from this traffic:\n" + verdict(rows, deployments=config.deployments))
    return 0


def _summary(rows, results, db: str, premium) -> None:
    ok = sum(1 for _, good in results if good)
    lat = [r.latency_ms for r in rows if r.status == 200]
    ttft = [r.ttft_ms for r in rows if r.ttft_ms is not None and r.status == 200]
    overhead = [r.overhead_ms for r in rows if r.status == 200]
    print(f"\n{len(results)} requests sent, {ok} answered, {len(rows)} ledger records")
    print(f"latency p50 {pct(lat, .5):.0f} ms  p95 {pct(lat, .95):.0f} ms  p99 {pct(lat, .99):.0f} ms;  "
          f"TTFT (streams) p50 {pct(ttft, .5):.0f} ms  p95 {pct(ttft, .95):.0f} ms;  "
          f"gateway overhead p50 {statistics.median(overhead) if overhead else 0:.2f} ms")
    by_dep: dict[str, list] = {}
    for r in rows:
        by_dep.setdefault("(cache hit)" if _hit(r) else r.deployment or "(none)", []).append(r)
    print(f"\n{'deployment':<38}{'requests':>9}{'prompt tok':>12}{'output tok':>12}{'cost USD':>14}")
    total = 0
    for dep, rs in sorted(by_dep.items()):
        cost = sum((r.cost for r in rs), start=type(rs[0].cost)(0))
        total += cost
        print(f"{dep:<38}{len(rs):>9}{sum(r.prompt_tokens for r in rs):>12}"
              f"{sum(r.completion_tokens for r in rs):>12}{cost:>14.6f}")
    print(f"{'total':<38}{len(rows):>9}{'':>24}{total:>14.6f}")
    _routing([r for r in rows if not _hit(r)], total, premium)
    hits = [r for r in rows if _hit(r)]
    saved = sum((r.saved for r in hits), start=type(total)(0))
    print(f"Cache: {len(hits)} of {len(rows)} requests answered from the exact cache in p50 "
          f"{pct([r.latency_ms for r in hits], .5):.2f} ms, at no upstream cost: {saved:.6f} USD saved.")
    fallbacks = sum(1 for r in rows if r.route and '"fallbacks"' in r.route)
    print(f"\n{fallbacks} request(s) fell back to another tier after the self-hosted one failed or stayed busy "
          f"past its queue_timeout; {len(rows) - ok} failed outright.")
    print(f"Read the ledger again any time: hedgeway spend --db {db}")


def _hit(record) -> bool:
    return (record.cache or "").startswith("hit")


def _routing(rows, total, premium) -> None:
    """The router's split by tier, and what the same tokens would have cost all on the premium tier."""
    import json
    from collections import Counter

    from hedgeway.pricing import cost
    from hedgeway.types import Usage

    tiers = Counter(json.loads(r.route).get("tier", "?") if r.route else "?" for r in rows if r.status == 200)
    split = ", ".join(f"{tier} {n}" for tier, n in sorted(tiers.items()))
    all_premium = sum((cost(Usage(r.prompt_tokens, r.completion_tokens, r.cached_tokens), premium)
                       for r in rows if r.status == 200), start=type(total)(0))
    saved = 1 - total / all_premium if all_premium else 0
    print(f"\nRouted by complexity: {split}. All on the premium tier the same tokens would have cost "
          f"{all_premium:.6f} USD; routing spent {total:.6f} ({saved:.0%} less).")
