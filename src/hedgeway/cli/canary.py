"""`hedgeway canary status|start|pause|resume|promote|rollback --config FILE`: canary ramps, straight in
the ledger database the gateways share (running gateways pick changes up within `routing.canary_poll`).

    hedgeway canary start llama-for-mini --model gpt-4o-mini --candidate llama-local --config hedgeway.yaml \\
        [--stages 5,25,50,100] [--min-requests 50] [--min-seconds 300] [--max-error-rate 0.02] [--max-sla-rate 0.1]
        [--min-agreement 0.6 [--quality-sample 0.1] [--min-quality-samples 20]]
    hedgeway canary start auto-v4 --model auto --candidate router:route-auto-v4.npz --config hedgeway.yaml
        # a new router version (proven, `router train --labels`) takes a share of the route `auto`
    hedgeway canary status [NAME] [--json]        # state, share, this stage's counts, the event history
    hedgeway canary pause|resume|promote|rollback NAME

`promote` moves one stage up (from the last stage: `promoted`); `rollback` sends all traffic back to the
baseline at once. `--config` is required: `start` checks both model names against it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from hedgeway.canary import DEFAULTS

# action -> (states it applies to, new state or None for "one stage up")
ACTIONS: dict[str, tuple[tuple[str, ...], str | None]] = {
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "promote": (("running", "paused"), None),
    "rollback": (("running", "paused", "promoted"), "rolled_back"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("canary", help="canary ramps with automatic rollback")
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = acts.add_parser("start", help="start a canary at its first stage")
    start.add_argument("name")
    start.add_argument("--model", required=True, help="the model name whose traffic is shared")
    start.add_argument("--candidate", required=True,
                       help="the model name that takes the share, or router:PATH (a proven router version for a route)")
    start.add_argument("--stages", default=",".join(map(str, DEFAULTS["stages"])),
                       help="percent per stage, ascending, ending at 100 (default 5,25,50,100)")
    for flag, kind in (("min_requests", int), ("min_seconds", float), ("max_error_rate", float),
                       ("max_sla_rate", float), ("quality_sample", float), ("min_quality_samples", int)):
        start.add_argument("--" + flag.replace("_", "-"), type=kind, default=DEFAULTS[flag],
                           help=f"default {DEFAULTS[flag]}")
    start.add_argument("--min-agreement", type=float, help="quality trigger: roll back when candidate answers "
                       "agree with the baseline's less than this on average (ROUGE-L, 0..1; default off)")
    status = acts.add_parser("status", help="state, share and history")
    status.add_argument("name", nargs="?")
    status.add_argument("--json", action="store_true")
    for action in ACTIONS:
        acts.add_parser(action, help=f"{action} a canary").add_argument("name")
    for parser in acts.choices.values():
        parser.add_argument("--config", required=True, help="the gateway config (its ledger and models)")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    try:
        stages = [int(x) for x in args.stages.split(",")]
    except ValueError:
        raise SystemExit("--stages must be comma-separated integers, e.g. 5,25,50,100") from None
    if not stages or stages[-1] != 100 or stages != sorted(set(stages)) or stages[0] <= 0:
        raise SystemExit("--stages must ascend, each in 1..100, and end at 100")
    fractions = (args.max_error_rate, args.max_sla_rate, args.quality_sample, args.min_agreement or 0)
    if not all(0 <= f <= 1 for f in fractions) or args.min_requests < 1 or args.min_quality_samples < 1:
        raise SystemExit("--max-error-rate, --max-sla-rate, --quality-sample and --min-agreement are "
                         "fractions in 0..1; --min-requests and --min-quality-samples >= 1")
    return {"stages": stages, "min_requests": args.min_requests, "min_seconds": args.min_seconds,
            "max_error_rate": args.max_error_rate, "max_sla_rate": args.max_sla_rate,
            "min_agreement": args.min_agreement, "quality_sample": args.quality_sample,
            "min_quality_samples": args.min_quality_samples}


def run(args: argparse.Namespace) -> int:
    from hedgeway.canary.store import CanaryStore
    from hedgeway.config import load
    from hedgeway.errors import ConfigError, HedgewayError

    try:
        config = load(args.config)
        store = CanaryStore(config.ledger.url)
    except ConfigError as exc:
        print(f"hedgeway canary: {exc}", file=sys.stderr)
        return 1
    try:
        if args.action == "start":
            problem = _router_version(config, args.model, args.candidate)
            if problem:
                print(f"hedgeway canary: {problem}", file=sys.stderr)
                return 2
            for flag in ("model", "candidate") if not args.candidate.startswith("router:") else ():
                if getattr(args, flag) not in config.models:
                    print(f"hedgeway canary: --{flag} {getattr(args, flag)!r} is not a model of {args.config}",
                          file=sys.stderr)
                    return 2
            row = store.create(args.name, args.model, args.candidate, _settings(args))
            print(f"canary {row.name}: {row.candidate} takes {row.share:.0%} of {row.model}")
            return 0
        if args.action == "status":
            return _status(store, args)
        return _act(store, args)
    except HedgewayError as exc:
        print(f"hedgeway canary: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _router_version(config: Any, route: str, candidate: str) -> str | None:
    """Why a `router:PATH` candidate cannot go live on `route` (None: it can, or it is a model canary)."""
    if not candidate.startswith("router:"):
        return None
    from hedgeway.routing.trained import TrainedModel

    if route not in {r.name for r in config.router.routes}:
        return f"--model {route!r} is not a routed name of the config (a router version needs one)"
    try:
        gate = TrainedModel.load(candidate[len("router:"):]).gate
    except ValueError as exc:
        return str(exc)
    if gate["proven"]:
        return None
    return f"router {candidate[len('router:'):]} is {gate['why']}: only a proven version goes live"


def _act(store: Any, args: argparse.Namespace) -> int:
    row = store.get(args.name)
    if row is None:
        print(f"hedgeway canary: no canary named {args.name!r}", file=sys.stderr)
        return 1
    states, target = ACTIONS[args.action]
    if row.state not in states:
        print(f"hedgeway canary: {args.name} is {row.state}; {args.action} applies to {', '.join(states)}",
              file=sys.stderr)
        return 1
    stage = row.stage
    if target is None:  # promote: one stage up, or done
        last = row.stage + 1 >= len(row.settings["stages"])
        target, stage = ("promoted", row.stage) if last else (row.state, row.stage + 1)
    new = store.transition(row, target, stage, f"{args.action} (CLI)")
    if new is None:
        print(f"hedgeway canary: {args.name} changed meanwhile; run status and try again", file=sys.stderr)
        return 1
    print(f"canary {new.name}: {new.state}, {new.candidate} takes {new.share:.0%} of {new.model}")
    return 0


def _status(store: Any, args: argparse.Namespace) -> int:
    rows = [r for r in store.all() if args.name in (None, r.name)]
    out = []
    for r in rows:
        requests, errors, sla, checked, agreement = store.totals(r.name, r.seq)
        out.append({"name": r.name, "model": r.model, "candidate": r.candidate, "state": r.state,
                    "share": r.share, "stage": r.stage, "stages": r.settings["stages"],
                    "stage_age_s": round(time.time() - r.stage_started, 1),
                    "stage_counts": {"requests": requests, "errors": errors, "sla_fallbacks": sla,
                                     "compared": checked,
                                     "agreement": round(agreement / checked, 4) if checked else None},
                    "settings": r.settings, "events": store.events(r.name)})
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    if not out:
        print("no canaries")
    for c in out:
        n = c["stage_counts"]
        print(f"{c['name']}: {c['state']}, {c['candidate']} takes {c['share']:.0%} of {c['model']} "
              f"(stage {c['stage'] + 1}/{len(c['stages'])} for {c['stage_age_s']:g} s: {n['requests']} requests, "
              f"{n['errors']} errors, {n['sla_fallbacks']} SLA fallbacks"
              + (f", agreement {n['agreement']:.2f} over {n['compared']}" if n["compared"] else "") + ")")
        for e in c["events"]:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["ts"]))
            print(f"  {stamp}  {e['from'] or '-'} → {e['to']} at {e['share']:.0%}: {e['reason']}")
    return 0
