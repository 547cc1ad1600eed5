"""`hedgeway spend [--db URL | --config FILE] [--since 7d] [--by day,model] [--period month] [--json]`: what
the ledger says was spent.

`--period day|week|month|total` folds the rows into calendar periods (UTC; weeks start on Monday) before
grouping by the `--by` columns; `--by user` attributes each key's spend to the user the key belongs to.

`errors` counts failed requests and streams that broke after their 200 (as /metrics does); `estimated`
counts requests whose tokens Hedgeway counted itself because the upstream reported no usage (README:
"Usage the upstream did not report").

Reads only: a SQLite file that does not exist is an error (exit 1), never silently created. Costs are
exact: the table rounds them to 6 decimals for display, `--json` prints the exact sum as a string.
"""

from __future__ import annotations

import argparse

# --by name -> ledger group key
BY_KEYS = {"day": "day", "model": "model_name", "deployment": "deployment", "key": "key_id", "team": "team",
           "user": "user"}
PERIODS = ("day", "week", "month", "total")
_HEADINGS = {"day": "day", "model_name": "model", "deployment": "deployment", "key_id": "key", "team": "team",
             "user": "user", "period": "period", "model": "model", "key": "key"}
_VIEW_NAMES = {"model_name": "model", "key_id": "key", "team": "team", "deployment": "deployment", "user": "user"}


def parse_since(text: str, now: float | None = None) -> float:
    """`7d`, `24h`, `30m`, `90s`, `2w` ago, or an ISO date/datetime (UTC unless it names an offset),
    as epoch seconds."""
    from hedgeway.keys.views import since_epoch

    try:
        return since_epoch(text, now)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_by(text: str) -> list[str]:
    """`day,model` -> ["day", "model_name"]. The ledger's own column names are accepted too."""
    keys = []
    for name in filter(None, (part.strip() for part in text.split(","))):
        key = BY_KEYS.get(name) or (name if name in BY_KEYS.values() else None)
        if key is None:
            raise argparse.ArgumentTypeError(f"cannot group by {name!r}; choose from {', '.join(BY_KEYS)}")
        if key not in keys:
            keys.append(key)
    return keys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spend", help="spend, tokens and errors from the ledger")
    p.add_argument("--db", default="sqlite:///hedgeway.db",
                   help="ledger URL (default sqlite:///hedgeway.db; postgresql://... also works)")
    p.add_argument("--config", help="take the ledger URL from this gateway config (instead of --db)")
    p.add_argument("--since", type=parse_since, help="only requests since: 7d, 24h, 30m, or an ISO date (UTC)")
    p.add_argument("--by", type=parse_by, default=["day", "model_name"],
                   help=f"comma list of {','.join(BY_KEYS)} (default day,model); empty for one total")
    p.add_argument("--period", choices=PERIODS,
                   help="fold into calendar periods (UTC; weeks start Monday); replaces day in --by")
    p.add_argument("--json", action="store_true", help="JSON list of rows; cost as an exact decimal string")
    p.set_defaults(func=run)


def exact(cost) -> str:
    """A Decimal as plain fixed-point text without trailing zeros: '0.3', '0.000000075', '12'."""
    text = format(cost, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def table(rows: list[dict], keys: list[str]) -> str:
    """Aligned plain-text columns, group values left-aligned, numbers right-aligned, then a total line."""
    numbers = ["requests", "errors", "estimated", "prompt_tokens", "completion_tokens", "cost"]
    headings = [_HEADINGS[k] for k in keys] + ["requests", "errors", "estimated", "prompt tokens",
                                               "completion tokens", "cost (USD)"]

    def cells(row: dict) -> list[str]:
        return ([("-" if row[k] is None else str(row[k])) for k in keys]
                + [str(row[n]) for n in numbers[:-1]] + [f"{row['cost']:.6f}"])

    body = [cells(r) for r in rows]
    total = {n: sum(r[n] for r in rows) for n in numbers}
    total_line = cells({**{k: "" for k in keys}, **total})
    if keys:
        total_line[0] = "total"
    lines = [headings, *body, total_line]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headings))]

    def fmt(line: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < len(keys) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(line, widths))).rstrip()

    rule = "-" * len(fmt(["-" * w for w in widths]))
    out = [fmt(headings), rule, *map(fmt, body)]
    if keys:  # with no grouping the single row already is the total
        out += [rule, fmt(total_line)]
    return "\n".join(out)


def _periods(store, args: argparse.Namespace) -> list[dict]:
    """Spend folded into periods (hedgeway.keys.views); `user` needs the keys table (key -> user)."""
    from hedgeway.keys import KeyStore, views

    users = None
    if "user" in args.by:
        keys = KeyStore(args.db)
        try:
            users = {r["id"]: r["user_id"] for r in keys.list_keys()}
        finally:
            keys.close()
    by = [_VIEW_NAMES[k] for k in args.by if k != "day"]
    if "day" in args.by and not args.period:
        args.period = "day"
    rows = views.spend(store, by, args.period or "total", args.since, users)
    for row in rows:  # same columns as the plain view
        row.setdefault("latency_p50_ms", None)
    return rows


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import os
    import sys

    from hedgeway.errors import ConfigError
    from hedgeway.ledger import open_store, sqlite_path

    try:
        if args.config:
            from hedgeway.config import load

            args.db = load(args.config).ledger.url
        if args.db.lower().startswith("sqlite://"):
            path = sqlite_path(args.db)
            if path != ":memory:" and not os.path.isfile(path):
                print(f"hedgeway spend: no ledger at {path} (is --db right? `hedgeway serve` creates it)",
                      file=sys.stderr)
                return 1
        store = open_store(args.db)
    except ConfigError as exc:  # messages never contain a password
        print(f"hedgeway spend: {exc}", file=sys.stderr)
        return 1
    try:
        store.migrate()  # an older ledger gets the columns this version reads
        if args.period or "user" in args.by:
            rows, args.by = _periods(store, args), ["period", *(_VIEW_NAMES[k] for k in args.by if k != "day")]
        else:
            rows = store.spend(since=args.since, group_by=args.by)
    except Exception as exc:  # a database error, not a bug in the caller: say so briefly
        logging.getLogger("hedgeway").debug("spend failed", exc_info=True)
        print(f"hedgeway spend: cannot read the ledger: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.json:
        out = [{**row, "cost": exact(row["cost"])} for row in rows]
        print(json.dumps(out, indent=2))
    elif not rows:
        print("no requests recorded" + (" in that period" if args.since is not None else ""))
    else:
        print(table(rows, args.by))
    return 0
