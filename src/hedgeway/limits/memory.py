"""In-memory limits store (one process): the same operations and semantics as the Redis store.

Budgets: per (scope, period, period start) a settled `spent` and a `held` sum of live reservations, each
reservation kept per request id with an expiry (a request that never settles stops holding budget after
`ttl`). Rate windows: a sliding log of (time, member, weight); a window admits while the weights of the
last `window` seconds plus the new one stay within the limit. Amounts are integer units (1e-9 USD).
All methods are synchronous and do no I/O; the asyncio event loop makes each one atomic.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from hedgeway.limits.periods import bounds


@dataclass(slots=True)
class Verdict:
    """The answer of `reserve`: ok with the budget keys to settle, or which budget/window refused."""

    ok: bool
    keys: list[str] = field(default_factory=list)
    budget: int = -1  # index of the refusing budget
    spent: int = 0
    held: int = 0
    end: int | None = None  # the refusing budget's reset (unix s), None for "total"
    soft: bool = False  # it would fit once in-flight reservations settle
    window: int = -1  # index of the refusing window
    retry_ms: int = 0
    grants: list[int] = field(default_factory=list)  # Redis leases: held per budget, then per window


class _Budget:
    __slots__ = ("spent", "held", "res", "fired", "expires")

    def __init__(self, expires: float | None):
        self.spent = 0
        self.held = 0
        self.res: dict[str, tuple[int, float]] = {}  # rid -> (units, expiry); insertion order = expiry order
        self.fired: set[float] = set()
        self.expires = expires

    def purge(self, now: float) -> None:
        res = self.res
        while res:
            rid = next(iter(res))
            amt, exp = res[rid]
            if exp > now:
                break
            del res[rid]
            self.held -= amt


class _Window:
    __slots__ = ("log", "weights", "sum")

    def __init__(self):
        self.log: deque[tuple[float, str]] = deque()
        self.weights: dict[str, int] = {}
        self.sum = 0

    def purge(self, cutoff: float) -> None:
        log, weights = self.log, self.weights
        while log and log[0][0] <= cutoff:
            self.sum -= weights.pop(log.popleft()[1], 0)

    def retry_ms(self, need: int, now: float, span: float) -> int:
        """Milliseconds until enough old entries leave the window to free `need`."""
        freed = 0
        for ts, member in self.log:
            freed += self.weights.get(member, 0)
            if freed >= need:
                return max(int((ts + span - now) * 1000) + 1, 1)
        return int(span * 1000)


class MemoryStore:
    def __init__(self, ttl: float, window: float, clock=time.time):
        self.ttl = ttl
        self.span = window
        self.clock = clock
        self.budgets: dict[str, _Budget] = {}
        self.windows: dict[str, _Window] = {}
        self._sweep_at = 0.0

    def _sweep(self, now: float) -> None:
        """Drop the counters of ended periods and idle windows (at most once a minute)."""
        if now < self._sweep_at:
            return
        self._sweep_at = now + 60
        for k in [k for k, b in self.budgets.items() if b.expires is not None and b.expires < now]:
            del self.budgets[k]
        for k in [k for k, w in self.windows.items() if not w.log or w.log[-1][0] < now - self.span]:
            del self.windows[k]

    def seed(self, scope: str, period: str, spent: int) -> None:
        """Start the current period of (scope, period) at `spent` units (settled before a restart)."""
        now = self.clock()
        start, end = bounds(period, now)
        b = self.budgets.setdefault(f"{scope}:{period}:{start}", _Budget(None if end is None else end + 2 * 86400))
        b.spent = spent

    async def reserve(self, rid: str, budgets: list[tuple], windows: list[tuple]) -> Verdict:
        return self.reserve_now(rid, budgets, windows)

    def reserve_now(self, rid: str, budgets: list[tuple], windows: list[tuple]) -> Verdict:
        """Atomically: every budget (scope, period, limit, amount, …) and every window (name, limit, weight, …)
        has room → hold them all; else change nothing and say which refused. (Trailing fields are the Redis
        store's lease requests: one process has no round trip to save, so it never leases.)"""
        now = self.clock()
        self._sweep(now)
        found = []
        for i, (scope, period, limit, amount, *_) in enumerate(budgets):
            start, end = bounds(period, now)
            key = f"{scope}:{period}:{start}"
            b = self.budgets.get(key)
            if b is None:
                b = self.budgets[key] = _Budget(None if end is None else end + 2 * 86400)
            b.purge(now)
            if b.spent + b.held + amount > limit:
                return Verdict(False, budget=i, spent=b.spent, held=b.held, end=end,
                               soft=b.spent + amount <= limit)
            found.append((key, b, amount))
        cutoff = now - self.span
        wins = []
        for j, (name, limit, weight, *_) in enumerate(windows):
            w = self.windows.get(name)
            if w is None:
                w = self.windows[name] = _Window()
            w.purge(cutoff)
            if w.sum + weight > limit:
                return Verdict(False, window=j, retry_ms=w.retry_ms(w.sum + weight - limit, now, self.span))
            wins.append((w, weight))
        exp = now + self.ttl
        for key, b, amount in found:
            b.held += amount
            b.res[rid] = (amount, exp)
        for w, weight in wins:
            w.log.append((now, rid))
            w.weights[rid] = weight
            w.sum += weight
        return Verdict(True, keys=[k for k, _, _ in found])

    async def settle(self, rid: str, budgets: list[tuple[str, int]], actual: int,
                     windows: list[tuple], thresholds: list[float]):
        return self.settle_now(rid, budgets, actual, windows, thresholds)

    def settle_now(self, rid: str, budgets: list[tuple[str, int]], actual: int,
                   windows: list[tuple], thresholds: list[float]):
        """Release `rid`'s reservations, add `actual` units to each budget (key, limit), set the weight of
        each window entry (name, member, weight, …). Returns (spent per budget, [(budget index, threshold)]
        crossed for the first time this period)."""
        spents, fired = [], []
        for i, (key, limit) in enumerate(budgets):
            b = self.budgets.get(key)
            if b is None:
                spents.append(None)
                continue
            held = b.res.pop(rid, None)
            if held is not None:
                b.held -= held[0]
            b.spent += actual
            spents.append(b.spent)
            if actual > 0:
                for th in thresholds:
                    if b.spent >= th * limit and th not in b.fired:
                        b.fired.add(th)
                        fired.append((i, th))
        for name, member, weight, *_ in windows:
            w = self.windows.get(name)
            if w is not None and member in w.weights:
                w.sum += weight - w.weights[member]
                w.weights[member] = weight
        return spents, fired
