"""Budget periods in UTC: daily (from 00:00), weekly (from Monday 00:00), monthly (from the 1st 00:00)
and total (never resets). A budget's counter is keyed by its period's start, so a new period starts at
zero without any reset job; the Redis backend computes the same starts in Lua from Redis's clock."""

from __future__ import annotations

from datetime import datetime, timezone

DAY = 86400
WEEK = 7 * DAY
MONDAY0 = 4 * DAY  # 1970-01-05, the first Monday after the epoch


def _month_start(t: float) -> tuple[int, int]:
    d = datetime.fromtimestamp(t, timezone.utc)
    start = datetime(d.year, d.month, 1, tzinfo=timezone.utc)
    nxt = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=timezone.utc)
    return int(start.timestamp()), int(nxt.timestamp())


def bounds(period: str, t: float) -> tuple[int, int | None]:
    """(start, end) of the period containing unix time `t`, in unix seconds; end is None for "total"."""
    if period == "daily":
        s = int(t // DAY) * DAY
        return s, s + DAY
    if period == "weekly":
        s = int((t - MONDAY0) // WEEK) * WEEK + MONDAY0
        return s, s + WEEK
    if period == "monthly":
        return _month_start(t)
    if period == "total":
        return 0, None
    raise ValueError(f"unknown period {period!r}")


def iso(t: int | None) -> str:
    return "never" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
