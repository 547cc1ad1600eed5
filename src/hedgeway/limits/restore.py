"""Budgets across a restart (memory backend): the current periods' settled spend, read from the ledger.

With `limits.backend: memory` the counters live in the process, so a restart would forget them and admit a
key that is already over its budget. At start-up the Limiter seeds its store from the ledger instead:

    spent = current_spend(ledger, key_users, now)   # {(scope, period): units} for scopes key:, team:,
                                                    # user: and global, in each period containing `now`

One grouped query per period (daily, weekly, monthly, total) over `ts >= period start`; "total" reads the
whole ledger once. Rows of the gateway's own copies (endpoints "shadow", "canary_check") are left out, as
admission never charged them to a budget. Users come from the key ring (key id → user id); the ledger records key and team.
Redis keeps its own counters across restarts and is not seeded.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hedgeway.limits.config import PERIODS
from hedgeway.limits.estimate import to_units
from hedgeway.limits.periods import bounds

UNCHARGED = ("shadow", "canary_check", "judge")  # endpoints of after-response calls, paid by the operator


def current_spend(ledger: Any, key_users: dict[str, str | None], now: float) -> dict[tuple[str, str], int]:
    """Settled spend in units (1e-9 USD) per (budget scope, period) for the periods containing `now`."""
    spent: dict[tuple[str, str], int] = defaultdict(int)
    for period in PERIODS:
        start, _ = bounds(period, now)
        for row in ledger.spend(since=start if start else None, group_by=("key_id", "team", "endpoint")):
            units = to_units(row["cost"])
            if not units or row["endpoint"] in UNCHARGED:
                continue
            key, team = row["key_id"], row["team"]
            scopes = ["global"]
            if key:
                scopes.append(f"key:{key}")
                if key_users.get(key):
                    scopes.append(f"user:{key_users[key]}")
            if team:
                scopes.append(f"team:{team}")
            for scope in scopes:
                spent[(scope, period)] += units
    return dict(spent)
