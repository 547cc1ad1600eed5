"""`hedgeway keys create|list|revoke|rotate [--db URL | --config FILE]`: virtual keys, straight in the
ledger database (no server needed; running gateways pick changes up within a second).

    hedgeway keys create --team search --budget 100/monthly --rpm 60 --models gpt-4o-mini --expires 90d
    hedgeway keys list [--team T] [--user U] [--json]
    hedgeway keys revoke KEY_ID
    hedgeway keys rotate KEY_ID

The secret is printed once, by create and rotate; list shows only its non-secret prefix.
This module also holds what `teams` and `users` share: the database options and the caps flags.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any, Callable

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def add_db_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument("--db", help="ledger URL (default sqlite:///hedgeway.db; postgresql://... also works)")
    where.add_argument("--config", help="take the ledger URL from this gateway config")
    p.add_argument("--json", action="store_true", help="print JSON")


def add_caps_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", help="comma list of allowed model names (default: every model)")
    p.add_argument("--budget", action="append", metavar="USD[/PERIOD]",
                   help="spend cap, e.g. 100/monthly (periods: daily, weekly, monthly, total); repeatable")
    p.add_argument("--rpm", type=int, help="requests per minute")
    p.add_argument("--tpm", type=int, help="tokens per minute")
    p.add_argument("--metadata", help="JSON object stored with it")


def caps_body(args: argparse.Namespace) -> dict[str, Any]:
    """The admin-API body the caps flags describe (only what was given: an update leaves the rest)."""
    body: dict[str, Any] = {}
    if args.models is not None:
        body["models"] = [m.strip() for m in args.models.split(",") if m.strip()] or None
    if args.budget:
        body["budgets"] = [dict(zip(("limit", "period"), b.split("/", 1))) for b in args.budget]
    if args.rpm is not None or args.tpm is not None:
        body["limits"] = {"rpm": args.rpm, "tpm": args.tpm}
    if args.metadata is not None:
        try:
            body["metadata"] = json.loads(args.metadata)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"--metadata is not valid JSON: {exc}") from None
    return body


def with_store(args: argparse.Namespace, fn: Callable[[Any], int]) -> int:
    """fn(store) on the database --db/--config names (migrated); errors become one line and exit 1."""
    from hedgeway.errors import ConfigError, HedgewayError
    from hedgeway.keys import KeyStore

    try:
        if args.config:
            from hedgeway.config import ledger_url

            url = ledger_url(args.config)
        else:
            url = args.db or "sqlite:///hedgeway.db"
        store = KeyStore(url)
    except ConfigError as exc:  # never contains a password
        print(f"hedgeway {args.command}: {exc}", file=sys.stderr)
        return 1
    try:
        store.migrate()
        return fn(store)
    except HedgewayError as exc:
        print(f"hedgeway {args.command}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _expiry(text: str | None) -> Any:
    if text is None:
        return None
    match = _DURATION.fullmatch(text.strip())
    return time.time() + float(match.group(1)) * _UNITS[match.group(2)] if match else text


def show(args: argparse.Namespace, rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("none")
        return
    cells = [[("-" if r.get(c) is None else str(r[c])) for c in columns] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(columns, *cells)]
    for line in (list(columns), *cells):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("keys", help="virtual keys: create, list, revoke, rotate")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    create = ksub.add_parser("create", help="create a key; prints its secret once")
    add_db_args(create)
    create.add_argument("--name")
    create.add_argument("--user", help="the user it belongs to (must exist: hedgeway users create)")
    create.add_argument("--team", help="the team it belongs to (must exist: hedgeway teams create)")
    create.add_argument("--expires", help="30d, 12h, … from now, or an ISO time (UTC unless it says)")
    add_caps_args(create)
    create.set_defaults(func=run_create)
    ls = ksub.add_parser("list", help="list keys (never their secrets)")
    add_db_args(ls)
    ls.add_argument("--user")
    ls.add_argument("--team")
    ls.set_defaults(func=run_list)
    for name, func, text in (("revoke", run_revoke, "revoke a key (it stops working within a second)"),
                             ("rotate", run_rotate, "new secret for a key; the old one stops working")):
        cmd = ksub.add_parser(name, help=text)
        add_db_args(cmd)
        cmd.add_argument("key_id")
        cmd.set_defaults(func=func)


def _print_secret(args: argparse.Namespace, view: dict[str, Any], secret: str) -> None:
    if args.json:
        print(json.dumps({**view, "key": secret}, indent=2))
    else:
        print(f"{view['id']}  {secret}")
        print("This is the only time the key is shown: store it now.", file=sys.stderr)


def run_create(args: argparse.Namespace) -> int:
    from hedgeway.keys import schema, views

    body = {**caps_body(args), "name": args.name, "user": args.user, "team": args.team,
            "expires_at": _expiry(args.expires)}

    def go(store) -> int:
        row, secret = store.create_key(schema.parse(schema.KeyCreate, body))
        _print_secret(args, views.key_view(row), secret)
        return 0
    return with_store(args, go)


def run_list(args: argparse.Namespace) -> int:
    from hedgeway.keys import views

    def go(store) -> int:
        rows = [views.key_view(r) for r in store.list_keys(args.user, args.team)]
        show(args, rows, ("id", "prefix", "name", "user", "team", "status", "expires_at"))
        return 0
    return with_store(args, go)


def run_revoke(args: argparse.Namespace) -> int:
    from hedgeway.keys import views

    def go(store) -> int:
        view = views.key_view(store.revoke_key(args.key_id))
        print(json.dumps(view, indent=2) if args.json else f"revoked {view['id']} at {view['revoked_at']}")
        return 0
    return with_store(args, go)


def run_rotate(args: argparse.Namespace) -> int:
    from hedgeway.keys import views

    def go(store) -> int:
        row, secret = store.rotate_key(args.key_id)
        _print_secret(args, views.key_view(row), secret)
        return 0
    return with_store(args, go)
