"""`hedgeway eval`: golden sets, runs through the gateway, and the regression gate.

    hedgeway eval sample --from-ledger --db URL --n 200 --output golden.jsonl
    hedgeway eval run --dataset golden.jsonl --model NAME (--gateway URL | --config FILE) --name RUN
    hedgeway eval compare BASELINE CANDIDATE --db URL [--max-drop 0.03] [--report out.md]
    hedgeway eval runs --db URL
    hedgeway eval score --scorers rouge_l,bertscore --input pairs.jsonl --output scores.jsonl   (eval_score.py)

Exit codes: 0 ok; 1 the gate failed (compare) or a run had errors; 2 bad input (dataset, config, runs).
"""

from __future__ import annotations

import argparse
import os
import sys

from hedgeway.cli import eval_score

_DEFAULT_DB = "sqlite:///hedgeway.db"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="golden sets, eval runs through the gateway, regression gate")
    cmds = p.add_subparsers(dest="eval_command", metavar="SUBCOMMAND", required=True)

    s = cmds.add_parser("sample", help="build a golden set from logged traffic (needs ledger.log_prompts)")
    s.add_argument("--from-ledger", action="store_true", required=True, help="sample from the ledger")
    s.add_argument("--db", default=_DEFAULT_DB, help=f"ledger URL (default {_DEFAULT_DB})")
    s.add_argument("--n", type=int, default=100, help="cases to sample (default 100)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--output", required=True, help="JSONL file to write")
    s.set_defaults(func=_sample)

    r = cmds.add_parser("run", help="send a golden set through a gateway and score the answers")
    r.add_argument("--dataset", required=True, help="JSONL golden set")
    r.add_argument("--model", required=True, help="the model name to ask the gateway for")
    where = r.add_mutually_exclusive_group(required=True)
    where.add_argument("--gateway", help="a running gateway's base URL (…/v1)")
    where.add_argument("--config", help="start an in-process gateway from this config")
    r.add_argument("--api-key-env", default="HEDGEWAY_API_KEY",
                   help="environment variable holding the key for --gateway (default HEDGEWAY_API_KEY)")
    r.add_argument("--name", required=True, help="run name (re-using it resumes the run)")
    r.add_argument("--db", help="where results go (default: the config's ledger, else " + _DEFAULT_DB + ")")
    r.add_argument("--concurrency", type=int, default=8)
    r.add_argument("--no-cache", action="store_true", help="bypass the gateway's response cache")
    r.add_argument("--scorers", default="exact,rouge_l", help="comma-separated (default exact,rouge_l)")
    r.add_argument("--judge-model", help="model for llm_judge (through the same gateway)")
    r.add_argument("--rubric", help="file with the judge's rubric template ({question}, {answer}, {reference})")
    r.add_argument("--temperature", type=float)
    r.add_argument("--max-tokens", type=int)
    r.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=_run)

    c = cmds.add_parser("compare", help="compare two runs; exit 1 when the candidate regressed")
    c.add_argument("baseline")
    c.add_argument("candidate")
    c.add_argument("--db", default=_DEFAULT_DB, help=f"ledger URL (default {_DEFAULT_DB})")
    c.add_argument("--max-drop", type=float, default=0.03, help="largest allowed drop of any mean (0.03)")
    c.add_argument("--report", help="also write the markdown summary to this file")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    c.set_defaults(func=_compare)

    ls = cmds.add_parser("runs", help="list stored runs")
    ls.add_argument("--db", default=_DEFAULT_DB)
    ls.set_defaults(func=_runs)
    eval_score.register(cmds)


def _fail(exc: Exception) -> int:
    print(f"hedgeway eval: {exc}", file=sys.stderr)
    return 2


def _sample(args: argparse.Namespace) -> int:
    from hedgeway.errors import ConfigError
    from hedgeway.evals import dataset
    from hedgeway.evals.store import EvalStore

    try:
        store = EvalStore(args.db)
    except ConfigError as exc:
        return _fail(exc)
    try:
        rows = store.logged_prompts(max(args.n * 20, 1000))
    finally:
        store.close()
    if not rows:
        print("hedgeway eval: the ledger holds no logged prompts. Prompts are not stored by default: set "
              "`ledger: {log_prompts: true}` in the gateway's config, serve traffic, then sample again.",
              file=sys.stderr)
        return 2
    cases = dataset.from_ledger(rows, args.n, args.seed)
    dataset.dump(cases, args.output)
    print(f"wrote {len(cases)} cases to {args.output} (from {len(rows)} logged requests; add `reference` "
          "answers by hand, or score with llm_judge)")
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from hedgeway.errors import ConfigError
    from hedgeway.evals import dataset
    from hedgeway.evals.runner import RunSpec, run_cases
    from hedgeway.evals.scorers import check
    from hedgeway.evals.store import EvalStore

    try:
        cases = dataset.load(args.dataset)
        scorers = check([s for s in args.scorers.split(",") if s])
        settings = {}
        if args.rubric:
            with open(args.rubric, encoding="utf-8") as f:
                settings["llm_judge"] = {"rubric": f.read()}
        params = {k: v for k, v in (("temperature", args.temperature), ("max_tokens", args.max_tokens))
                  if v is not None}
        spec = RunSpec(args.name, args.model, scorers, settings, args.concurrency, args.no_cache,
                       args.judge_model, params)
        gateway_cm, base_url, key, db = _gateway(args)
    except (ConfigError, OSError) as exc:
        return _fail(exc)

    async def go(url: str, store: EvalStore):
        import openai

        client = openai.AsyncOpenAI(base_url=url, api_key=key, max_retries=0, timeout=args.timeout)
        try:
            return await run_cases(cases, spec, client, store, progress=not args.no_progress)
        finally:
            await client.close()

    with gateway_cm or contextlib.nullcontext() as gw:
        try:
            store = EvalStore(db)
        except ConfigError as exc:
            return _fail(exc)
        try:
            summary = asyncio.run(go(gw.base_url if gw else base_url, store))
        except ConfigError as exc:  # a scorer's settings; what finished is stored, so a rerun resumes
            return _fail(exc)
        finally:
            store.close()
    print(f"run {args.name}: {summary.total} cases, {summary.skipped} already stored (skipped), "
          f"{summary.answered} answered, {summary.errors} errors in {summary.seconds:.1f} s "
          f"({summary.per_second:.1f} cases/s); results in {db.split('://')[0]} ledger")
    return 1 if summary.errors else 0


def _gateway(args: argparse.Namespace):
    """(context manager starting an in-process gateway | None, base URL, API key, results DB URL)."""
    if args.gateway:
        return None, args.gateway, os.environ.get(args.api_key_env, "sk-none"), args.db or _DEFAULT_DB
    from hedgeway.config import load
    from hedgeway.http.background import BackgroundGateway

    config = load(args.config)
    return BackgroundGateway(config), None, config.auth.master_key or "sk-none", args.db or config.ledger.url


def _compare(args: argparse.Namespace) -> int:
    from hedgeway.errors import ConfigError
    from hedgeway.evals.compare import compare, render_markdown
    from hedgeway.evals.store import EvalStore

    try:
        store = EvalStore(args.db)
    except ConfigError as exc:
        return _fail(exc)
    try:
        base, cand = store.results(args.baseline), store.results(args.candidate)
        missing = [n for n, rows in ((args.baseline, base), (args.candidate, cand)) if not rows]
        if missing:
            return _fail(ConfigError("", f"no stored run named {', '.join(map(repr, missing))} "
                                         "(see `hedgeway eval runs`)"))
        tags = {r["case_id"]: r["tags"] for r in base + cand}
        errored = ({r["case_id"] for r in base if r["error"]}, {r["case_id"] for r in cand if r["error"]})
        report = compare(store.scores(args.baseline), store.scores(args.candidate), tags,
                         baseline=args.baseline, candidate=args.candidate, max_drop=args.max_drop,
                         seed=args.seed, errored=errored)
    finally:
        store.close()
    text = render_markdown(report) + _costs(base, cand, args.baseline, args.candidate)
    print(text)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            f.write(text)
    return 1 if report.failed else 0


def _costs(base: list[dict], cand: list[dict], bname: str, cname: str) -> str:
    import statistics
    from decimal import Decimal

    lines = ["", "## Cost and latency", "", "| run | cases | errors | cost (USD) | latency p50 ms | tokens out |",
             "|---|---|---|---|---|---|"]
    for name, rows in ((bname, base), (cname, cand)):
        cost = sum((r["cost"] for r in rows if r["cost"] is not None), Decimal(0))
        p50 = statistics.median([r["latency_ms"] for r in rows]) if rows else 0.0
        lines.append(f"| {name} | {len(rows)} | {sum(1 for r in rows if r['error'])} | {cost:.6f} | {p50:.0f} | "
                     f"{sum(r['completion_tokens'] for r in rows)} |")
    return "\n".join(lines) + "\n"


def _runs(args: argparse.Namespace) -> int:
    from hedgeway.errors import ConfigError
    from hedgeway.evals.store import EvalStore

    try:
        store = EvalStore(args.db)
    except ConfigError as exc:
        return _fail(exc)
    try:
        for run, model, n in store.runs():
            print(f"{run}\t{model}\t{n} cases")
    finally:
        store.close()
    return 0
