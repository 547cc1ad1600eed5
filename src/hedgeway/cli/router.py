"""`hedgeway router train | score | eval`: the router's offline interface.

    hedgeway router score --router NAME [--config FILE] --input prompts.jsonl --output scores.jsonl
        input lines {"id", "prompt"} (prompt: a string or an OpenAI messages list);
        output lines {"id", "score"}, a higher score meaning "needs the strong model".
    hedgeway router eval --router NAME [--config FILE] --data DIR [--split test] [--chart curves.png]
        RouteLLM's protocol on every DIR/*.jsonl ({"prompt", "strong", "weak"[, "split"]}):
        % strong calls vs quality at 11 quantile thresholds, APGR, CPT(50%), CPT(80%).
    hedgeway router train --data DIR --output model.npz [--split train]
        fit the learned router on (prompt, strong quality, weak quality) lines; use it with
        `options: {model: model.npz}` on a route (or --model for score/eval).
    hedgeway router train --labels FILE [--cv 5] [--oof-output OOF] [--output MODEL] [--json]
        a route's own router from its own labels, with its proof (see `hedgeway.cli.router_labels`);
        use it with `router: trained, options: {model: MODEL}`.
    hedgeway router labels import FILE | export --db DB --route NAME
        a route's labels (hedgeway.cli.label_io); `router train --from-ledger DB --route NAME` trains on them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from hedgeway.cli.router_labels import add_arguments as add_label_arguments


def _router(args) -> Any:
    """The router instance: options from the first route of --config using it, else defaults."""
    from hedgeway.routing.registry import ROUTERS

    if args.router not in ROUTERS:
        raise SystemExit(f"unknown router {args.router!r}; known: {', '.join(sorted(ROUTERS))}")
    options: dict[str, Any] = {}
    if args.config:
        from hedgeway.config import load

        for route in load(args.config).router.routes:
            if route.router == args.router:
                options = dict(route.options)
                break
    if getattr(args, "model", None):
        options["model"] = args.model
    if args.router == "random" and "seed" not in options:
        options["seed"] = 0
    return ROUTERS[args.router](options)


def _scorer(args):
    from hedgeway.routing.features import prompt_of

    router = _router(args)
    return lambda prompt: router.score(prompt_of(prompt))


def score(args) -> int:
    import orjson

    fn = _scorer(args)
    src = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")
    dst = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")
    n = 0
    with src, dst:
        for lineno, line in enumerate(src, 1):
            if not line.strip():
                continue
            row = orjson.loads(line)
            if not isinstance(row, dict) or "prompt" not in row:
                print(f"{args.input}:{lineno}: each line needs {{\"id\", \"prompt\"}}", file=sys.stderr)
                return 2
            dst.write(orjson.dumps({"id": row.get("id"), "score": fn(row["prompt"])}) + b"\n")
            n += 1
    print(f"scored {n} prompt(s) with {args.router}", file=sys.stderr)
    return 0


def evaluate(args) -> int:
    from hedgeway.routing import evaluate as ev

    fn = _scorer(args)
    data = ev.load_dir(args.data, args.split)
    results = {bench: {args.router: ev.evaluate(fn, items)} for bench, items in data.items() if items}
    print(ev.table(results))
    if args.chart:
        print(f"chart: {args.chart}" if ev.chart(results, args.chart) else "chart skipped: matplotlib not installed")
    if args.json:
        import orjson

        with open(args.json, "wb") as f:
            f.write(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


def train(args) -> int:
    if args.from_ledger:
        from hedgeway.cli.label_io import train_from_ledger

        return train_from_ledger(args)
    if args.labels:
        from hedgeway.cli.router_labels import train_labels

        return train_labels(args)
    if not (args.data and args.output):
        raise SystemExit("router train needs --data DIR --output MODEL (or --labels FILE)")
    import numpy as np

    from hedgeway.routing import evaluate as ev
    from hedgeway.routing.features import prompt_of
    from hedgeway.routing.learned import train as fit

    prompts, strong, weak, sources = [], [], [], {}
    for bench, items in ev.load_dir(args.data, args.split).items():
        if not items:
            continue
        qs = np.array([[it.strong, it.weak] for it in items], float)
        lo, hi = qs.min(), qs.max()
        qs = (qs - lo) / ((hi - lo) or 1.0)  # each benchmark's qualities on [0, 1]
        prompts += [prompt_of(it.prompt) for it in items]
        strong += list(qs[:, 0])
        weak += list(qs[:, 1])
        sources[bench] = len(items)
    model = fit(prompts, strong, weak, dim=args.dim, l2=args.l2, epochs=args.epochs, target=args.target,
                meta={"trained_on": sources, "version": args.version})
    model.save(args.output)
    print(f"trained on {sum(sources.values())} prompts {sources} in {model.meta['trained_s']} s -> {args.output}")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("router", help="train, score and evaluate routers", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="router_command", metavar="ACTION", required=True)

    def common(q):
        q.add_argument("--router", required=True, help="heuristic | learned | random | cost")
        q.add_argument("--config", help="take the router's options from this config's first route using it")
        q.add_argument("--model", help="learned: the .npz artefact (default: the shipped one)")

    s = sub.add_parser("score", help="score prompts (higher: needs the strong model)")
    common(s)
    s.add_argument("--input", required=True, help="JSONL {id, prompt}; - for stdin")
    s.add_argument("--output", required=True, help="JSONL {id, score}; - for stdout")
    s.set_defaults(func=score)

    e = sub.add_parser("eval", help="RouteLLM protocol: APGR, CPT(50%%), CPT(80%%)")
    common(e)
    e.add_argument("--data", required=True, help="directory of *.jsonl {prompt, strong, weak[, split]}")
    e.add_argument("--split", default=None, help="only lines with this split (and lines without one)")
    e.add_argument("--chart", help="write the curves as a PNG here")
    e.add_argument("--json", help="write the full results (curves included) as JSON here")
    e.set_defaults(func=evaluate)

    t = sub.add_parser("train", help="fit the learned router (--data) or a route's own router (--labels)")
    t.add_argument("--data", help="directory of *.jsonl {prompt, strong, weak[, split]}")
    t.add_argument("--split", default="train", help="only lines with this split (default train)")
    t.add_argument("--output", help="the .npz artefact to write")
    t.add_argument("--dim", type=int, default=1 << 15, help="hashed n-gram buckets (default 32768)")
    t.add_argument("--l2", type=float, default=1e-4)
    t.add_argument("--epochs", type=int, default=300)
    t.add_argument("--target", choices=["wins", "soft"], default="wins")
    t.add_argument("--version", default="custom", help="recorded in the artefact's metadata")
    add_label_arguments(t)
    t.add_argument("--from-ledger", metavar="DB", help="train on the labels a route stored in this ledger (--route)")
    t.add_argument("--route", help="--from-ledger: the routed name whose labels to train on")
    t.set_defaults(func=train)

    from hedgeway.cli import label_io

    label_io.register(sub)
