"""`hedgeway deployments`: the configured deployments, and their capacity measured.

    hedgeway deployments list  --config FILE
    hedgeway deployments bench NAME --config FILE [--concurrency 1,2,4,8] [--requests N] [--max-tokens N] [--json]

NAME is a deployment id (as `list` shows it) or a model name with one deployment. The bench's progress
bar goes to stderr; the table (or `--json`, which `hedgeway plan --bench FILE` reads) to stdout.
Exit status: 0 ok, 1 every request of a level failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("deployments", help="list deployments; measure a deployment's throughput curve",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="deployment ids, providers, slots and prices")
    ls.add_argument("--config", required=True, metavar="FILE")
    ls.set_defaults(func=run_list)
    b = sub.add_parser("bench", help="output tokens/s, TTFT and errors per concurrency level")
    b.add_argument("name", metavar="NAME", help="deployment id, or a model name with one deployment")
    b.add_argument("--config", required=True, metavar="FILE")
    b.add_argument("--concurrency", default="1,2,4,8", metavar="N,N,…", help="levels (default 1,2,4,8)")
    b.add_argument("--requests", type=int, metavar="N", help="requests per level (default 2 × level, min 4)")
    b.add_argument("--max-tokens", type=int, default=64, metavar="N", help="output tokens per request (64)")
    b.add_argument("--json", action="store_true", help="print the result as JSON")
    b.set_defaults(func=run_bench)


def find(config: Any, name: str):
    """The deployment `name` names (an id, or a model with exactly one deployment); ValueError otherwise."""
    if name in config.deployments:
        return config.deployments[name]
    deps = config.models.get(name)
    if deps and len(deps) == 1:
        return deps[0]
    known = ", ".join(config.deployments)
    raise ValueError(f"{name!r} is not a deployment id{' (the model has several)' if deps else ''}; known: {known}")


def run_list(args: argparse.Namespace) -> int:
    from hedgeway.config import load

    for d in load(args.config).deployments.values():  # a bad config: one line from cli.main
        slots = f"max_concurrency {d.max_concurrency}" if d.max_concurrency else "no slot limit"
        print(f"{d.id}\t{d.provider}\t{slots}\tprice {d.price.source}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hedgeway.capacity import bench, render
    from hedgeway.config import load
    from hedgeway.errors import ConfigError

    try:
        levels = [int(x) for x in args.concurrency.split(",")]
        if not levels or min(levels) < 1 or (args.requests is not None and args.requests < 1) or args.max_tokens < 1:
            raise ValueError("--concurrency, --requests and --max-tokens take positive integers")
        dep = find(load(args.config), args.name)
    except (ConfigError, ValueError) as exc:
        print(f"hedgeway deployments bench: error: {exc}", file=sys.stderr)
        return 2
    total = sum(args.requests or max(4, 2 * c) for c in levels)
    with tqdm(total=total, desc=f"bench {dep.id}", unit="req", file=sys.stderr) as bar:
        result = asyncio.run(bench(dep, levels, args.requests, args.max_tokens, lambda: bar.update(1)))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 1 if any(lv["errors"] == lv["requests"] for lv in result["levels"]) else 0
