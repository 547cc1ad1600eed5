"""What clients see: keys, users and teams as JSON-ready dicts (never a secret or a digest), and spend
views from the ledger grouped by key, team, user or model per day, week, month or in total.

Spend is exact: the ledger sums each (day, group) as Decimal, and days are folded into weeks/months
here with Decimal arithmetic wide enough never to round. Spend by user maps each ledger row's key to the
user the key belongs to now (the ledger records key and team, not user).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Context, Decimal
from typing import Any, Callable, Sequence

from hedgeway.keys.store import key_status

_WIDE = Context(prec=60)
_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NUMBERS = ("requests", "errors", "estimated", "prompt_tokens", "completion_tokens", "cost")

# view name -> ledger group key ("user" is derived from key_id through the keys table)
BY: dict[str, str] = {"key": "key_id", "team": "team", "user": "key_id", "model": "model_name",
                      "deployment": "deployment"}
# period -> label of the period a "YYYY-MM-DD" day falls in (weeks start on Monday, UTC)
PERIODS: dict[str, Callable[[str], str]] = {
    "day": lambda day: day,
    "week": lambda day: (date.fromisoformat(day) - timedelta(days=date.fromisoformat(day).weekday())).isoformat(),
    "month": lambda day: day[:7],
    "total": lambda day: "total",
}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def since_epoch(text: str, now: float | None = None) -> float:
    """`7d`, `24h`, `30m`, `90s`, `2w` ago, or an ISO date/datetime (UTC unless it names an offset), as
    epoch seconds; ValueError otherwise."""
    text = text.strip()
    match = _AGO.fullmatch(text)
    if match:
        now = datetime.now(timezone.utc).timestamp() if now is None else now
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected a duration like 7d, 24h, 30m, or an ISO date like 2024-05-01; got {text!r}"
                         ) from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def key_view(row: dict[str, Any]) -> dict[str, Any]:
    """A key as the API and CLI show it: its display prefix, never its secret or digest."""
    return {"object": "key", "id": row["id"], "name": row["name"], "prefix": row["prefix"] + "…",
            "user": row["user_id"], "team": row["team_id"], "status": key_status(row),
            "models": row["models"], "budgets": row["budgets"], "limits": row["limits"],
            "metadata": row["metadata"], "expires_at": iso(row["expires_at"]), "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"]), "revoked_at": iso(row["revoked_at"])}


def owner_view(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"object": kind[:-1], "id": row["id"], "models": row["models"], "budgets": row["budgets"],
            "limits": row["limits"], "metadata": row["metadata"], "created_at": iso(row["created_at"]),
            "updated_at": iso(row["updated_at"])}


def spend(ledger: Any, by: Sequence[str], period: str = "total", since: float | None = None,
          key_users: dict[str, str | None] | None = None) -> list[dict[str, Any]]:
    """Rows {"period": label, <by…>: value, requests, errors, estimated, prompt_tokens, completion_tokens, cost} from
    `ledger.spend`, ordered by period then group values (None first). `key_users` (key id → user) is
    needed only when grouping by "user". Unknown names raise ValueError."""
    for name in by:
        if name not in BY:
            raise ValueError(f"cannot group spend by {name!r}; choose from {', '.join(BY)}")
    if period not in PERIODS:
        raise ValueError(f"unknown period {period!r}; choose from {', '.join(PERIODS)}")
    columns = list(dict.fromkeys(BY[name] for name in by))
    group = (["day"] if period != "total" else []) + columns
    label = PERIODS[period]
    users = key_users or {}
    out: dict[tuple, dict[str, Any]] = {}
    for row in ledger.spend(since=since, group_by=group):
        values = {name: users.get(row["key_id"]) if name == "user" else row[BY[name]] for name in by}
        when = label(row["day"]) if period != "total" else "total"
        acc = out.get((when, *values.values()))
        if acc is None:
            acc = out[(when, *values.values())] = {"period": when, **values, **{n: 0 for n in _NUMBERS[:-1]},
                                                   "cost": Decimal(0)}
        for n in _NUMBERS[:-1]:
            acc[n] += row[n]
        acc["cost"] = _WIDE.add(acc["cost"], row["cost"])
    return [out[k] for k in sorted(out, key=lambda k: (k[0], *((v is not None, v or "") for v in k[1:])))]
