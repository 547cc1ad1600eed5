"""`hedgeway shadow report [--db URL | --config FILE] [--since 7d] [--json]`: shadow traffic side by side
(hedgeway.shadow) — per model and candidate: copies, candidate errors, agreement, latency and cost."""

from __future__ import annotations

import argparse
import json

from hedgeway.cli.spend import exact, parse_since


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shadow", help="shadow traffic: the candidates' answers next to the live ones")
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    report = acts.add_parser("report", help="agreement, latency and cost per model and candidate")
    report.add_argument("--db", default="sqlite:///hedgeway.db", help="ledger URL (default sqlite:///hedgeway.db)")
    report.add_argument("--config", help="take the ledger URL from this gateway config (instead of --db)")
    report.add_argument("--since", type=parse_since, help="only copies since: 7d, 24h, or an ISO date (UTC)")
    report.add_argument("--json", action="store_true", help="JSON list of rows; costs as exact decimal strings")
    report.set_defaults(func=run)


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def run(args: argparse.Namespace) -> int:
    from hedgeway.ledger import require_ledger
    from hedgeway.shadow import Shadows

    url = args.db
    if args.config:
        from hedgeway.config import ledger_url

        url = ledger_url(args.config)
    require_ledger(url)
    shadows = Shadows([], url)
    try:
        rows = shadows.report(args.since or 0.0)
    finally:
        shadows.close()
    if args.json:
        print(json.dumps([{**r, "primary_cost": exact(r["primary_cost"]), "shadow_cost": exact(r["shadow_cost"])}
                          for r in rows], indent=2))
        return 0
    if not rows:
        print("no shadow copies recorded" + (" in that period" if args.since else ""))
        return 0
    head = ("model", "candidate", "copies", "errors", "ROUGE-L", "cosine", "p50 ms live", "p50 ms shadow",
            "cost live", "cost shadow")
    body = [(r["model"], r["candidate"], str(r["requests"]), str(r["errors"]), _fmt(r["rouge_l"], ".3f"),
             _fmt(r["similarity"], ".3f"), _fmt(r["primary_p50_ms"], ".0f"), _fmt(r["shadow_p50_ms"], ".0f"),
             f"{r['primary_cost']:.6f}", f"{r['shadow_cost']:.6f}") for r in rows]
    widths = [max(len(c[i]) for c in (head, *body)) for i in range(len(head))]
    for line in (head, *body):
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    return 0
