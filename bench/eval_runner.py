"""Eval runner throughput: cases/s through an in-process gateway with a simulated upstream.

    python bench/eval_runner.py [--cases 1000] [--concurrency 8 32] [--ttft-ms 1] [--repeats 3]

Each repeat is a fresh run (new name) of the same golden set with the exact and rouge_l scorers, stored
in a temporary SQLite ledger; prints the median cases/s per concurrency. The simulated upstream's TTFT
and speed are settable: with the defaults (1 ms, 50k tokens/s) the figure is the runner + gateway + store
cost; with a realistic TTFT it is bounded by concurrency / latency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path

import openai

from hedgeway.config import from_dict
from hedgeway.evals.dataset import Case
from hedgeway.evals.runner import RunSpec, run_cases
from hedgeway.evals.store import EvalStore
from hedgeway.http.background import BackgroundGateway

KEY = "sk-bench-eval-runner"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--ttft-ms", type=float, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    db = f"sqlite:///{tmp}/bench.db"
    config = from_dict({
        "auth": {"master_key": KEY}, "ledger": {"url": db, "spool_path": None},
        "models": [{"name": "sim", "deployments": [{
            "provider": "simulated", "model": "sim-1", "price": {"input": "1", "output": "2"},
            "settings": {"ttft_ms": args.ttft_ms, "tokens_per_second": 50000, "max_output_tokens": 40}}]}]})
    cases = [Case.model_validate({"id": f"c{i}", "prompt": f"Explain item {i} briefly.", "reference": "x y z"})
             for i in range(args.cases)]
    with BackgroundGateway(config) as gw:
        store = EvalStore(db)
        for conc in args.concurrency:
            rates = []
            for rep in range(args.repeats):
                async def go(conc=conc, rep=rep):
                    client = openai.AsyncOpenAI(base_url=gw.base_url, api_key=KEY, max_retries=0)
                    try:
                        return await run_cases(cases, RunSpec(f"c{conc}-{rep}", "sim", ["exact", "rouge_l"],
                                                              concurrency=conc), client, store, progress=False)
                    finally:
                        await client.close()
                summary = asyncio.run(go())
                assert summary.errors == 0
                rates.append(summary.per_second)
            print(f"concurrency {conc:3d}: median {statistics.median(rates):7.1f} cases/s "
                  f"(runs: {', '.join(f'{r:.1f}' for r in rates)}; {args.cases} cases, ttft {args.ttft_ms} ms)")
        store.close()


if __name__ == "__main__":
    main()
