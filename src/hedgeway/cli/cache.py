"""`hedgeway cache calibrate | bench`.

    hedgeway cache calibrate --pairs FILE --target-precision 0.97 [--embedder NAME] [--config FILE]
                             [--limit N] [--plot curve.png] [--write-config FILE]
        sweeps thresholds 0.50…0.99 over labelled pairs (hedgeway.cache.calibrate names the formats) and
        prints the chosen threshold (the lowest reaching the target precision), its precision and recall,
        and the precision/recall table. --write-config sets cache.threshold in a YAML config file
        (re-serialised: comments are not kept).
    hedgeway cache bench --insert A.jsonl --query B.jsonl [--config FILE] [--output R.jsonl]
        inserts every {"id", "prompt"} of A as a cached answer (its id), looks up every line of B through the
        gateway's own cache code (embedder, fingerprint, threshold of that config; in-memory backend),
        writes {"id", "hit", "matched_id", "similarity"} per query; prints hit rate and lookup latency.
"""

from __future__ import annotations

import argparse
import sys
from types import SimpleNamespace
from typing import Any


def _cache_config(args) -> Any:
    """The config's cache section (default when no --config), with --embedder applied."""
    from hedgeway.cache.config import CacheIn

    cfg = None
    if args.config:
        from hedgeway.config import load
        cfg = load(args.config)
    section = cfg.cache if cfg is not None else CacheIn()
    updates = {"enabled": True}
    if getattr(args, "embedder", None):
        updates["embedder"] = args.embedder
    return cfg, section.model_copy(update=updates)


def _embedder(cfg, section):
    """The embedder as the gateway builds it; `openai` gets the config's providers (no gateway needed)."""
    from hedgeway.embedders import build_embedder
    from hedgeway.providers import PROVIDERS

    shim = None
    if cfg is not None:
        shim = SimpleNamespace(config=cfg, providers={d.id: PROVIDERS[d.provider](d) for d in cfg.deployments.values()})
    return build_embedder(section, shim)


def _calibrate(args) -> int:
    import numpy as np

    from hedgeway.cache.calibrate import (
        choose,
        load_pairs,
        plot,
        sample,
        similarities,
        sweep,
    )

    cfg, section = _cache_config(args)
    emb = _embedder(cfg, section)
    if emb is None:
        raise SystemExit("calibration needs an embedder (cache.embedder is 'none')")
    pairs = sample(load_pairs(args.pairs, args.sts_positive), args.limit, args.seed)
    labels = np.array([p[2] for p in pairs])
    sims = similarities(lambda texts: emb.embed_sync(texts, whole_only=True), pairs)  # as the cache embeds
    points = sweep(sims, labels)
    chosen, best = choose(points, args.target_precision)
    print(f"pairs: {len(pairs)} ({int(labels.sum())} labelled duplicates), embedder: {emb.name}")
    print(f"{'threshold':>9} {'precision':>9} {'recall':>7} {'hits':>7}")
    for p in points:
        mark = " <" if p is chosen else ""
        print(f"{p.threshold:9.2f} {p.precision:9.4f} {p.recall:7.4f} {p.hits:7d}{mark}")
    if chosen is not None:
        pick = chosen
        print(f"threshold {pick.threshold:.2f}: precision {pick.precision:.4f}, recall {pick.recall:.4f} "
              f"(target precision {args.target_precision})")
    else:
        pick = best
        print(f"target precision {args.target_precision} is not reached at any threshold; highest: "
              f"threshold {best.threshold:.2f}, precision {best.precision:.4f}, recall {best.recall:.4f}")
    if args.plot:
        plot(points, args.plot, f"{emb.name} on {args.pairs.rsplit('/', 1)[-1]} ({len(pairs)} pairs)")
        print(f"curve: {args.plot}")
    if args.write_config:
        _write_threshold(args.write_config, pick.threshold)
        print(f"cache.threshold: {pick.threshold:.2f} written to {args.write_config}")
    return 0 if chosen is not None else 1


def _write_threshold(path: str, threshold: float) -> None:
    import yaml

    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    doc.setdefault("cache", {})["threshold"] = round(threshold, 4)
    with open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="response cache: calibrate the threshold, replay a workload")
    cmds = p.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)
    c = cmds.add_parser("calibrate", help="choose the semantic threshold on labelled pairs")
    c.add_argument("--pairs", required=True, help="JSONL {a,b,label}, QQP .json, STS-B or MRPC .tsv")
    c.add_argument("--target-precision", type=float, default=0.97)
    c.add_argument("--embedder", help="an embedder name (default: the config's, else minilm)")
    c.add_argument("--config", help="a hedgeway config (its cache section; needed for --embedder openai)")
    c.add_argument("--limit", type=int, help="a random sample of N pairs (seeded)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--sts-positive", type=float, default=4.0, help="STS-B score counted as a duplicate")
    c.add_argument("--plot", help="write the precision/recall curve to this PNG (needs matplotlib)")
    c.add_argument("--write-config", help="set cache.threshold in this YAML config file")
    c.set_defaults(func=_calibrate)
    b = cmds.add_parser("bench", help="insert A, look up B through the gateway's cache code")
    b.add_argument("--insert", required=True)
    b.add_argument("--query", required=True)
    b.add_argument("--config")
    b.add_argument("--embedder")
    b.add_argument("--output")
    b.set_defaults(func=lambda args: _bench(args))


def _bench(args) -> int:
    from hedgeway.cache.replay import run

    cfg, section = _cache_config(args)
    return run(args, cfg, section, _embedder(cfg, section), sys.stdout)
