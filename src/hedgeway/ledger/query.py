"""What every ledger backend shares: column order, row extraction for inserts, spend grouping and shaping.

Backends differ only in SQL dialect; these helpers keep their results identical (same rows, same order)."""

from __future__ import annotations

from decimal import Decimal
from operator import attrgetter
from typing import Any, Callable, Iterable, Sequence

from hedgeway.ledger.base import RECORD_FIELDS, Record

COLUMNS = ", ".join(RECORD_FIELDS)
GROUP_KEYS = ("day", "model_name", "deployment", "key_id", "team", "endpoint")
_values = attrgetter(*RECORD_FIELDS)
# An error is a row whose status says so, or a stream that broke after its 200 (error_type
# "UpstreamErrorMidStream"): the same rule as /metrics' hedgeway_errors_total.
ERROR_ROW = "(status >= 400 OR error_type IS NOT NULL)"
ERRORS = f"sum(CASE WHEN {ERROR_ROW} THEN 1 ELSE 0 END)"
ESTIMATED = "sum(CASE WHEN usage_estimated THEN 1 ELSE 0 END)"  # rows whose tokens Hedgeway counted
_COST = RECORD_FIELDS.index("cost")
_SAVED = RECORD_FIELDS.index("saved")


def record_values(r: Record, money: Callable[[Decimal], Any] = lambda d: d) -> list:
    """A Record's fields in RECORD_FIELDS order, money columns passed through `money`. Runs on the writer
    thread for every row, which shares the GIL with the event loop: one C-level attrgetter, no per-field
    Python loop."""
    values = list(_values(r))
    values[_COST] = money(values[_COST])
    values[_SAVED] = money(values[_SAVED])
    return values


def check_group_by(group_by: Sequence[str]) -> list[str]:
    """The group keys in order, duplicates dropped; ValueError naming the allowed keys on anything else."""
    if isinstance(group_by, str):  # a bare "day" would otherwise iterate as characters
        group_by = [group_by]
    keys: list[str] = []
    for key in group_by:
        if key not in GROUP_KEYS:
            raise ValueError(f"cannot group spend by {key!r}; allowed: {', '.join(GROUP_KEYS)}")
        if key not in keys:
            keys.append(key)
    return keys


def spend_rows(fetched: Iterable[Sequence[Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Shape `SELECT <keys>, requests, errors, prompt, completion, cost, p50, estimated` rows into spend
    dicts, cost as Decimal, ordered by group values with NULLs first (the same on every backend)."""
    n = len(keys)
    out = []
    for row in fetched:
        requests, errors, prompt, completion, cost, p50, estimated = row[n:]
        if not requests:  # without GROUP BY an empty table still yields one all-zero row: no groups
            continue
        item = dict(zip(keys, row[:n]))
        item.update(requests=requests, errors=errors, prompt_tokens=prompt, completion_tokens=completion,
                    cost=Decimal(cost), latency_p50_ms=p50, estimated=int(estimated or 0))
        out.append(item)
    out.sort(key=lambda r: tuple((r[k] is not None, r[k] or "") for k in keys))
    return out
