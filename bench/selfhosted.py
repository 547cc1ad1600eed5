"""A real self-hosted model, directly and behind Hedgeway's queue: llama.cpp's server with SmolLM2-135M
(one slot, one thread; hedgeway.selfhost), six concurrent streams each way, then the deployment's curve.

    python bench/selfhosted.py [--streams 6] [--max-tokens 48]      (needs the server: README, "Self-hosted models")

Prints, for each way: streams that came back with text, wall time, TTFT p50/max (through Hedgeway it
includes the wait for the slot), and the machine load before and after; one request warms the server up first. Then `hedgeway deployments bench`
at concurrency 1,2,4 straight at the server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import yaml

from hedgeway.config import from_dict
from hedgeway.http.background import BackgroundGateway
from hedgeway.selfhost import ALIAS, LlamaServer

KEY = "sk-bench-selfhosted"
PROMPT = [{"role": "user", "content": "Tell a short story about a lighthouse keeper and a storm."}]


def config(base_url: str) -> dict:
    return {"auth": {"master_key": KEY}, "ledger": {"url": "sqlite:///:memory:"}, "routing": {"num_retries": 0},
            "models": [{"name": "tiny", "deployments": [{
                "provider": "openai", "model": ALIAS, "api_base": base_url, "timeout": 300,
                "price": {"gpu_hour": "1.20", "tokens_per_second": 1500}, "max_concurrency": 1,
                "queue_timeout": 300}]}]}


def streams(base_url: str, model: str, n: int, max_tokens: int) -> str:
    client = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=300)

    def one(_):
        t0, first, text = time.perf_counter(), None, ""
        for chunk in client.chat.completions.create(model=model, messages=PROMPT, max_tokens=max_tokens,
                                                    temperature=0, stream=True):
            first = first or time.perf_counter() - t0
            text += "".join(c.delta.content or "" for c in chunk.choices)
        return first, text
    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    wall = time.perf_counter() - started
    ttft = [r[0] * 1000 for r in results]
    whole = sum(bool(r[1].strip()) for r in results)
    return (f"{whole}/{n} streams with text, wall {wall:.1f} s, TTFT p50 {statistics.median(ttft):.0f} ms, "
            f"max {max(ttft):.0f} ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", type=int, default=6)
    p.add_argument("--max-tokens", type=int, default=48)
    args = p.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), {os.cpu_count()} cores")
    with LlamaServer() as server:
        streams(server.base_url, ALIAS, 1, 8)  # the first request after start pays a one-off warm-up
        print("direct:          ", streams(server.base_url, ALIAS, args.streams, args.max_tokens))
        with BackgroundGateway(from_dict(config(server.base_url))) as gw:
            print("through Hedgeway:", streams(gw.base_url, "tiny", args.streams, args.max_tokens))
        path = "/tmp/hedgeway-bench-selfhosted.yaml"
        with open(path, "w") as fh:
            yaml.safe_dump(config(server.base_url), fh)
        subprocess.run([sys.executable, "-m", "hedgeway", "deployments", "bench", "tiny", "--config", path,
                        "--concurrency", "1,2,4", "--max-tokens", str(args.max_tokens)], check=False)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
