"""`hedgeway` command line. Each command group is one module in this package exposing
`register(subparsers)`, which adds its parser and sets `func(args) -> int`. Modules import their heavy
dependencies inside `func`, so `hedgeway --help` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from hedgeway import __version__

# command group -> module (hedgeway.cli.<module>)
COMMANDS: dict[str, str] = {
    "serve": "serve",
    "demo": "demo",
    "config": "config",
    "spend": "spend",
    "plan": "plan",
    "router": "router",
    "keys": "keys",
    "teams": "teams",
    "users": "users",
    "canary": "canary",
    "cache": "cache",
    "eval": "eval",
    "shadow": "shadow",
    "deployments": "deployments",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hedgeway", description="Hedgeway LLM gateway")
    parser.add_argument("--version", action="version", version=f"hedgeway {__version__}")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        try:
            mod = importlib.import_module(f"hedgeway.cli.{module}")
        except ModuleNotFoundError as exc:  # a command group not built yet
            if exc.name != f"hedgeway.cli.{module}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "openai"):  # the SDK logs every request at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
