"""Aggregate reads of the ledger for the dashboard (/ui): spend over time, route split, cache, latency and
errors. Every method is one grouped scan of `requests` over `ts >= since` (the `requests_ts` index), so
a million-row ledger answers in well under a second per panel (bench/ui_bench.py measures it).

Money stays exact: SQLite sums the TEXT costs with the Decimal aggregate `dsum`, PostgreSQL sums NUMERIC.
Days are bucketed as integer UTC day numbers (cheaper than formatting a date per row) and folded into
weeks/months in Python with Decimal arithmetic. Methods are synchronous: callers run them in a thread.

SQLite reads use their own connection (WAL: they never wait for, nor block, the ledger's writer thread);
PostgreSQL reads go through the store's connection and its reconnect-once retry.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from decimal import Context, Decimal
from typing import Any

import numpy as np

from hedgeway.keys.views import PERIODS
from hedgeway.ledger.query import ERRORS, ESTIMATED
from hedgeway.ledger.sqlite import _DecimalSum

_WIDE = Context(prec=60)
_EPOCH = date(1970, 1, 1)
# dashboard group name -> ledger column (only these are ever interpolated into SQL)
GROUPS: dict[str, str] = {"model": "model_name", "team": "team", "key": "key_id", "deployment": "deployment"}
PERCENTILES = (50, 90, 99)
_SQL = {  # per dialect: placeholder, money sum, day number, route tier
    "sqlite": {"p": "?", "sum": "dsum({})", "day": "CAST(ts / 86400 AS INTEGER)",
               "tier": "CASE WHEN json_valid(route) THEN json_extract(route, '$.tier') END"},
    "postgresql": {"p": "%s", "sum": "coalesce(sum({}), 0)", "day": "floor(ts / 86400)::bigint",
                   "tier": "CASE WHEN route LIKE '{%%' THEN (route::jsonb ->> 'tier') END"},
}
CACHE_HITS = ("hit-exact", "hit-semantic")


def _pct(values: list) -> dict[str, float | None]:
    if not values:
        return {f"p{p}": None for p in PERCENTILES}
    got = np.percentile(np.asarray(values, dtype=np.float64), PERCENTILES)
    return {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, got)}


def _day(n: int) -> str:
    return (_EPOCH + timedelta(days=int(n))).isoformat()


def _usd(d: Decimal) -> str:
    return format(d.normalize() if d else Decimal(0), "f")  # "0.00012", not "0.000120000000"


class Dashboard:
    def __init__(self, store: Any):
        self.dialect = store.dialect
        self.sql = _SQL[self.dialect]
        self._lock = threading.Lock()
        self._query = self._sqlite_reader(store) if self.dialect == "sqlite" else self._postgres_reader(store)

    def _sqlite_reader(self, store: Any) -> Callable[[str, tuple], list]:
        if store.path == ":memory:":  # one in-process database: only the store's own connection sees it
            conn, lock = store._conn, store._lock
        else:
            conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.create_aggregate("dsum", 1, _DecimalSum)
            lock = self._lock

        def query(sql: str, params: tuple) -> list:
            with lock:
                return conn.execute(sql, params).fetchall()
        return query

    def _postgres_reader(self, store: Any) -> Callable[[str, tuple], list]:
        def query(sql: str, params: tuple) -> list:
            return store._run(lambda conn: conn.execute(sql, params).fetchall(), retry=True)
        return query

    def _select(self, cols: Sequence[str], since: float | None, group: int, extra: str = "") -> list:
        table = "requests"
        if self.dialect == "sqlite" and self._wide(since):
            # A range covering much of the table reads faster as one sequential scan than as ~N index
            # lookups (3x on a million rows); SQLite's planner would take the ts index regardless.
            table = "requests NOT INDEXED"
        sql = f"SELECT {', '.join(cols)} FROM {table}"
        params: tuple = ()
        if since is not None:
            sql += f" WHERE ts >= {self.sql['p']}"
            params = (since,)
        if extra:
            sql += (" AND " if params else " WHERE ") + extra
        if group:
            sql += " GROUP BY " + ", ".join(str(i + 1) for i in range(group))
        return self._query(sql, params)

    def _wide(self, since: float | None) -> bool:
        """True when `ts >= since` covers more than a tenth of the ledger's time span (one index probe)."""
        if since is None:
            return True
        # two subqueries: each is one index probe, where "min(ts), max(ts)" in one SELECT scans the table
        first = self._query("SELECT (SELECT min(ts) FROM requests), (SELECT max(ts) FROM requests)", ())[0]
        if first[0] is None or first[1] <= first[0]:
            return False
        return (first[1] - since) / (first[1] - first[0]) > 0.1

    def _sums(self, keys: Sequence[str], money: Sequence[str], since: float | None) -> list[tuple]:
        """Rows (*keys, count, *exact Decimal sums of the `money` columns), grouped by `keys`.

        SQLite fast path: costs are fixed-point TEXT with at most 12 decimals (the scale PostgreSQL's
        NUMERIC(24, 12) keeps), so each is summed as an integer count of 1e-12 USD. Parsing such a text
        as a double and rounding cost * 1e12 is exact while |cost| < 1000 (error < 0.25 unit). The query
        also returns each group's largest decimal count and |cost|; if any group breaks either bound, or
        the integer sum overflows, the slow exact path (the Decimal aggregate `dsum`) answers instead."""
        n = len(keys) + 1
        if self.dialect == "sqlite":
            fast = [e for c in money for e in (f"sum(CAST(round(CAST({c} AS REAL) * 1e12) AS INTEGER))",
                                               f"max(length({c}) - instr({c}, '.'))", f"max(abs(CAST({c} AS REAL)))")]
            try:
                rows = self._select([*keys, "count(*)", *fast], since, len(keys))
            except (sqlite3.OperationalError, OverflowError):  # integer overflow: a huge total
                rows = None
            if rows is not None and all(r[i + 1] is None or (r[i + 1] <= 12 and r[i + 2] < 1000)
                                        for r in rows for i in range(n, len(r), 3)):
                return [(*r[:n], *(Decimal(r[i] or 0).scaleb(-12) for i in range(n, len(r), 3))) for r in rows]
        sums = [self.sql["sum"].format(c) for c in money]
        return [(*r[:n], *(Decimal(v) for v in r[n:])) for r in self._select([*keys, "count(*)", *sums], since,
                                                                             len(keys))]

    # --- panels ---
    def spend(self, by: str, period: str, since: float | None) -> dict[str, Any]:
        """Spend per (period label, group value): {"periods": [...], "series": [{"name", "cost": [...],
        "requests": [...]}], "totals": {"cost", "requests"}}; costs as exact fixed-point strings."""
        col, label = GROUPS[by], PERIODS[period]
        rows = self._sums([self.sql["day"], col], ["cost"], since)
        cells: dict[tuple[str, Any], list] = {}
        for day, name, n, cost in rows:
            cell = cells.setdefault((label(_day(day)), name), [0, Decimal(0)])
            cell[0] += n
            cell[1] = _WIDE.add(cell[1], cost)
        periods = sorted({p for p, _ in cells})
        names = sorted({n for _, n in cells}, key=lambda n: (n is not None, n or ""))
        series, total, count = [], Decimal(0), 0
        for name in names:
            costs = [cells.get((p, name), [0, Decimal(0)]) for p in periods]
            s = sum((c[1] for c in costs), Decimal(0))
            series.append({"name": name, "cost": [_usd(c[1]) for c in costs], "requests": [c[0] for c in costs],
                           "total": _usd(s)})
            total, count = _WIDE.add(total, s), count + sum(c[0] for c in costs)
        series.sort(key=lambda s: -Decimal(s["total"]))
        return {"by": by, "period": period, "periods": periods, "series": series,
                "totals": {"cost": _usd(total), "requests": count}}

    def routes(self, since: float | None) -> dict[str, Any]:
        """Requests and spend by router tier (None: not routed by tiers) and by deployment that answered."""
        rows = self._sums([self.sql["tier"], "deployment"], ["cost"], since)
        tiers: dict[Any, list] = {}
        deps: dict[Any, list] = {}
        for tier, dep, n, cost in rows:
            for book, k in ((tiers, tier), (deps, dep)):
                cell = book.setdefault(k, [0, Decimal(0)])
                cell[0] += n
                cell[1] = _WIDE.add(cell[1], cost)

        def shaped(book: dict) -> list[dict[str, Any]]:
            return sorted(({"name": k, "requests": v[0], "cost": _usd(v[1])} for k, v in book.items()),
                          key=lambda r: (-r["requests"], r["name"] or ""))
        return {"tiers": shaped(tiers), "deployments": shaped(deps)}

    def cache(self, since: float | None) -> dict[str, Any]:
        """Requests per cache outcome, hit rate = hits / (hits + misses) (bypassed and uncached requests
        are not lookups), and the money saved (sum of `saved`)."""
        rows = self._sums(["cache"], ["saved"], since)
        outcomes = {(c or "none"): n for c, n, _ in rows}
        saved = sum((s for *_, s in rows), Decimal(0))
        hits = sum(outcomes.get(h, 0) for h in CACHE_HITS)
        lookups = hits + outcomes.get("miss", 0)
        return {"outcomes": outcomes, "hits": hits, "lookups": lookups,
                "hit_rate": hits / lookups if lookups else None, "saved": _usd(saved)}

    def latency(self, since: float | None) -> dict[str, Any]:
        """Latency and TTFT percentiles (p50/p90/p99, ms) per model over successful requests, exact (linear
        interpolation, as numpy's default and PostgreSQL's percentile_cont). One scan; a SQL histogram
        of whole milliseconds was measured slower (it needs one scan per column)."""
        rows = self._select(["model_name", "latency_ms", "ttft_ms"], since, 0, "status < 400")
        by_model: dict[str, tuple[list, list]] = {}
        for model, lat, ttft in rows:
            lats, ttfts = by_model.setdefault(model, ([], []))
            lats.append(lat)
            if ttft is not None:
                ttfts.append(ttft)
        return {"models": [{"model": m, "requests": len(v[0]), "latency_ms": _pct(v[0]), "ttft_ms": _pct(v[1])}
                           for m, v in sorted(by_model.items())]}

    def errors(self, since: float | None) -> dict[str, Any]:
        """Per model: requests, errors (status >= 400 or a stream broken after its 200), error rate, and
        requests whose usage Hedgeway estimated (the upstream reported none); error counts per type."""
        rows = self._select(["model_name", "error_type", "count(*)", ERRORS, ESTIMATED], since, 2)
        models: dict[str, list[int]] = {}
        types: dict[str, int] = {}
        for model, etype, n, errs, estimated in rows:
            cell = models.setdefault(model, [0, 0, 0])
            cell[0] += n
            cell[1] += int(errs or 0)
            cell[2] += int(estimated or 0)
            if errs:
                types[etype or "unknown"] = types.get(etype or "unknown", 0) + int(errs)
        out = [{"model": m, "requests": n, "errors": e, "error_rate": e / n if n else 0.0, "estimated": est}
               for m, (n, e, est) in sorted(models.items())]
        return {"models": out, "types": dict(sorted(types.items(), key=lambda kv: -kv[1])),
                "requests": sum(r["requests"] for r in out), "errors": sum(r["errors"] for r in out),
                "estimated": sum(r["estimated"] for r in out)}
