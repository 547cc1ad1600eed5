"""`hedgeway config check FILE`: validate a config (either shape) and say what it resolves to.
`hedgeway config init [FILE]`: write the commented starter config (to stdout without FILE)."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from importlib import resources


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True)
    check = csub.add_parser("check", help="validate a config file; exit 1 if invalid")
    check.add_argument("file")
    check.set_defaults(func=run_check)
    init = csub.add_parser("init", help="write a commented starter config to FILE (never over an existing one)")
    init.add_argument("file", nargs="?", help="where to write it (default: print it)")
    init.set_defaults(func=run_init)


def price(value: Decimal) -> str:
    """A per-million price for reading: six significant digits ($2.31481, $0.15)."""
    return format(value, ".6g") if value else "0"


def run_check(args: argparse.Namespace) -> int:
    from hedgeway.config import load
    from hedgeway.errors import ConfigError

    try:
        cfg = load(args.file)
    except ConfigError as exc:
        print(f"hedgeway config check: error: {exc}", file=sys.stderr)
        return 1
    print(f"ok: {args.file} ({cfg.source} format), {len(cfg.models)} model(s), "
          f"{len(cfg.deployments)} deployment(s)")
    for name, deps in cfg.models.items():
        chain = cfg.routing.fallbacks.get(name)
        print(f"  {name}" + (f"  (fallbacks: {' → '.join(chain)})" if chain else ""))
        for d in deps:
            p = d.price
            print(f"    - {d.id}: {d.provider} {d.api_base or '(in-process)'}  "
                  f"${price(p.input)}/${price(p.output)} per M tokens [{p.source}]")
    for line in route_lines(cfg):
        print(line)
    for warning in cfg.warnings:
        print(f"warning: {warning}")
    return 0


def run_init(args: argparse.Namespace) -> int:
    text = resources.files("hedgeway").joinpath("data/starter.yaml").read_text()
    if args.file is None:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.file, "x") as f:
            f.write(text)
    except FileExistsError:
        print(f"hedgeway config init: error: {args.file} exists; not overwritten", file=sys.stderr)
        return 1
    print(f"wrote {args.file}: edit it, then `hedgeway config check {args.file}`")
    return 0


def route_lines(cfg) -> list[str]:
    """One line per routed name; a router with a proof (`trained`) says whether it is proven, and
    where an unproven one sends every request."""
    from hedgeway.routing.config import TIERS
    from hedgeway.routing.registry import ROUTERS

    out = []
    for route in cfg.router.routes:
        gate = getattr(ROUTERS[route.router](route.options), "gate", None)
        line = f"  {route.name}: {route.router} over " + ", ".join(f"{t}={m}" for t, m in route.tiers.items())
        if gate is not None:
            default = route.default or [t for t in TIERS if t in route.tiers][-1]
            line = f"  {route.name}: {route.router} ({gate['version']}) {gate['why']}"
            line += "" if gate["proven"] else f"; every request goes to {default}"
        out.append(line)
    return out
