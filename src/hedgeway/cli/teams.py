"""`hedgeway teams create|list|update|delete [--db URL | --config FILE]`, straight in the ledger database.

    hedgeway teams create search --budget 500/monthly --rpm 600 --models gpt-4o-mini,gpt-4o
    hedgeway teams update search --budget 800/monthly      # replaces the budgets; other fields stay
    hedgeway teams delete search                            # refused while the team has active keys

`users` (hedgeway.cli.users) is the same command over the users table.
"""

from __future__ import annotations

import argparse
import json

from hedgeway.cli.keys import add_caps_args, add_db_args, caps_body, show, with_store


def register_owner(sub: argparse._SubParsersAction, kind: str) -> None:
    p = sub.add_parser(kind, help=f"{kind}: create, list, update, delete (budgets, limits, models)")
    osub = p.add_subparsers(dest=f"{kind}_command", required=True)
    for action in ("create", "list", "update", "delete"):
        cmd = osub.add_parser(action, help=f"{action} {kind}")
        add_db_args(cmd)
        if action != "list":
            cmd.add_argument("id")
        if action in ("create", "update"):
            add_caps_args(cmd)
        cmd.set_defaults(func=lambda args, action=action: run(args, kind, action))


def register(sub: argparse._SubParsersAction) -> None:
    register_owner(sub, "teams")


def run(args: argparse.Namespace, kind: str, action: str) -> int:
    from hedgeway.keys import schema, views

    def go(store) -> int:
        if action == "list":
            rows = [views.owner_view(kind, r) for r in store.list_owners(kind)]
            if not args.json:  # compact table cells; --json keeps the structure
                rows = [{"id": r["id"],
                         "budgets": ", ".join(f"{b['limit']}/{b['period']}" for b in r["budgets"]) or None,
                         "limits": " ".join(f"{k}={v}" for k, v in (r["limits"] or {}).items() if v) or None,
                         "models": ",".join(r["models"]) if r["models"] else None} for r in rows]
            show(args, rows, ("id", "budgets", "limits", "models"))
            return 0
        if action == "delete":
            store.delete_owner(kind, args.id)
            print(f"deleted {kind[:-1]} {args.id}")
            return 0
        if action == "create":
            row = store.create_owner(kind, schema.parse(schema.OwnerCreate, {"id": args.id, **caps_body(args)}))
        else:
            row = store.update_owner(kind, args.id, schema.parse(schema.OwnerUpdate, caps_body(args)))
        view = views.owner_view(kind, row)
        print(json.dumps(view, indent=2) if args.json else f"{action}d {kind[:-1]} {view['id']}")
        return 0
    return with_store(args, go)
