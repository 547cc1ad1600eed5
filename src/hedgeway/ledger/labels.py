"""The SQL of route labels (table `route_labels`, migration 011) and of the ledger reads labelling needs.

Every function takes `q(sql, params=()) -> cursor` inside a transaction of `hedgeway.keys.db` (`?`
placeholders; the PostgreSQL adapter rewrites them). `hedgeway.routing.label_store` is the interface.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Sequence

Query = Callable[..., Any]

COLUMNS = ("route", "id", "ts", "source", "request_id", "key_id", "strong_model", "weak_model", "served", "strong",
           "weak", "strong_wins", "verdict", "detail", "embedding", "features", "prompt")
_FEATURES = ("embedding", "features", "prompt")  # a new label without them keeps the stored ones
_UPSERT = (f"INSERT INTO route_labels ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
           "ON CONFLICT (route, id) DO UPDATE SET "
           + ", ".join(f"{c} = COALESCE(excluded.{c}, route_labels.{c})" if c in _FEATURES else f"{c} = excluded.{c}"
                       for c in COLUMNS[2:]))
LABELLING = ("shadow", "judge")  # the endpoints of labelling calls


def put(q: Query, rows: Sequence[tuple]) -> None:
    """Insert or replace labels (rows in COLUMNS order): the same (route, id) again is an update, which
    keeps the stored prompt features where the new label has none (feedback sent again to a replica
    that no longer remembers the request)."""
    for row in rows:
        q(_UPSERT, row)


def select(q: Query, route: str) -> list[dict[str, Any]]:
    """Every label of `route`, oldest first, as dicts of COLUMNS."""
    rows = q(f"SELECT {', '.join(COLUMNS)} FROM route_labels WHERE route = ? ORDER BY ts, id", (route,)).fetchall()
    return [dict(zip(COLUMNS, r)) for r in rows]


def counts(q: Query, route: str) -> dict[str, int]:
    """Labels of `route` per verdict."""
    return dict(q("SELECT verdict, count(*) FROM route_labels WHERE route = ? GROUP BY verdict", (route,)).fetchall())


def labelling_spend(q: Query, tag: str, since: float) -> Decimal:
    """USD of the labelling calls (ledger rows of endpoint shadow/judge) whose `route` JSON starts with
    `tag` (e.g. '{"learn":"auto"'), made at or after `since`."""
    pattern = tag.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    rows = q("SELECT cost FROM requests WHERE ts >= ? AND endpoint IN (?, ?) "
             "AND (route = ? OR route LIKE ? ESCAPE '\\')", (since, *LABELLING, tag + "}", pattern + ",%")).fetchall()
    return sum((Decimal(str(r[0])) for r in rows), Decimal(0))


def request(q: Query, request_id: str) -> dict[str, Any] | None:
    """The ledger's row of a user's request (key_id, model_name, deployment, route, prompt), or None."""
    row = q("SELECT key_id, model_name, deployment, route, prompt, endpoint FROM requests WHERE request_id = ?",
            (request_id,)).fetchone()
    return dict(zip(("key_id", "model_name", "deployment", "route", "prompt", "endpoint"), row)) if row else None
