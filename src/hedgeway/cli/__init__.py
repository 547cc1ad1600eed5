"""`hedgeway` command line. Each command group is one module in this package exposing
`register(subparsers)`, which adds its parser and sets `func(args) -> int`. Modules import their heavy
dependencies inside `func`, so `hedgeway --help` stays fast.

A user never sees a traceback: bad arguments, and any error a command does not report itself, end as one
line on stderr (`hedgeway <command>: error: …`) and a non-zero exit; `--log-level DEBUG` logs the
traceback. A closed stdout (`hedgeway spend | head`) ends the command quietly."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
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


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the usage block is what `--help` is for."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hedgeway", description="Hedgeway LLM gateway")
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


def setup_logging(level: str) -> None:
    """Log lines to stderr at `level` (also run by each `serve --workers N` process)."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2", "openai"):  # the SDK logs every request at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        parser.error(f"--log-level: {args.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    setup_logging(args.log_level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at exit: a reader that went away is handled below
        return code
    except BrokenPipeError:  # the reader went away (`| head`): not an error worth a word
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        logging.getLogger("hedgeway").debug("%s failed", args.command, exc_info=True)
        text = str(exc).strip().splitlines()
        print(f"hedgeway {args.command}: error: {text[0] if text else type(exc).__name__}", file=sys.stderr)
        return 1
