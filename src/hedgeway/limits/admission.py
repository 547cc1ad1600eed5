"""`Limiter`: the admission step with budgets, rate limits and alerts over a memory or Redis store.

- `admit` checks model access, then reserves the request's maximum cost (estimate.py) against every
  budget that applies (the principal's and the global ones) and takes one slot in every rate window
  (RPM: weight 1; TPM: estimated prompt tokens + max_tokens when given), all in one atomic store call.
  A budget that is full only because of in-flight reservations is waited on (polling, up to
  `budget_wait` seconds) rather than refused: a request is refused only when the settled spend leaves
  no room for it, or when the wait ran out.
- `deployment` takes a slot in the deployment's rpm/tpm windows before each upstream attempt.
- `settle` replaces the reservation by the actual cost and corrects TPM entries to the actual tokens;
  memory settles in line, Redis in a background task (retried). Never blocks, never raises.
- Redis with leases (`limits.redis.lease`, leases.py): a request is admitted on this replica's leases when
  they have room, with no round trip; otherwise its own reservation asks Redis for new leases.
- Redis errors: the store is skipped for `redis.retry_interval` seconds after each error; fail-closed
  refuses with 503, fail-open admits against a process-local memory store. Logged once per outage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from itertools import count
from typing import Any, Callable

from hedgeway.errors import BudgetExceeded, LimitsUnavailable, RateLimited, UpstreamRateLimited
from hedgeway.limits.alerts import Alerter, payload
from hedgeway.limits.config import LimitsIn
from hedgeway.limits.estimate import Estimator, fmt_usd, to_units, to_usd
from hedgeway.limits.leases import Lease, Leases, Taken
from hedgeway.limits.memory import MemoryStore, Verdict
from hedgeway.limits.metrics import render
from hedgeway.limits.periods import bounds, iso
from hedgeway.limits.redis_store import RedisStore, StoreDown
from hedgeway.limits.restore import current_spend
from hedgeway.limits.rules import RulesMemo
from hedgeway.types import Budget, Deployment, Principal, Usage

log = logging.getLogger("hedgeway.limits")
SETTLE_RETRIES = (0.2, 1.0, 3.0)
SETTLE_BATCH = 256  # settlements per script call: bounds how long one call holds Redis


@lru_cache(maxsize=4096)
def _units(limit: Decimal) -> int:
    return to_units(limit)


@dataclass(slots=True)
class Ticket:
    rid: str
    budgets: tuple[Budget, ...] = ()
    keys: list[str] = field(default_factory=list)  # the store's keys of those budgets (period fixed)
    tpm: list[str] = field(default_factory=list)  # admission TPM windows to correct on settle
    tokens: int = 0  # estimated tokens counted in TPM windows
    store: Any = None  # the store that holds the reservation
    out: int = 0  # output tokens a budget reservation holds (0: no budget); a stream stops past them
    deps: list[tuple[Any, str, str]] = field(default_factory=list)  # (store, tpm window, member)
    attempts: int = 0
    leased: Taken | None = None  # admitted on this replica's leases: what it took from them


def _usd(units: int) -> str:
    return fmt_usd(to_usd(units))


def _redis(cfg: LimitsIn) -> RedisStore:
    r = cfg.redis
    return RedisStore(r.url, r.prefix, cfg.reservation_ttl, cfg.window, r.timeout, r.connect_timeout)


_LEASED = Verdict(True)
_UNITS = {"rpm": "req", "tpm": "tok"}


# `limits.backend` -> the shared store; None: the process's own memory store is the store. The memory store
# exists either way: it is what fail-open falls back to.
BACKENDS: dict[str, Callable[[LimitsIn], RedisStore | None]] = {"memory": lambda cfg: None, "redis": _redis}


class Limiter:
    def __init__(self, cfg: LimitsIn, models: dict[str, tuple[Deployment, ...]],
                 fallbacks: dict[str, list[str]]):
        self.cfg = cfg
        self.est = Estimator(cfg.bytes_per_token, cfg.default_max_tokens)
        self.margin = Decimal(1) + Decimal(str(cfg.reserve_margin))
        self.rules = RulesMemo(cfg, models, fallbacks)
        self.local = MemoryStore(cfg.reservation_ttl, cfg.window)
        self.store = BACKENDS[cfg.backend](cfg) or self.local
        lease = cfg.redis.lease
        self.leases = Leases(lease.requests, lease.seconds, lease.share, self._give_back) if cfg.leasing else None
        self.alerter = Alerter(cfg.alerts)
        self.thresholds = list(cfg.alerts.thresholds)
        self.use: dict[tuple[str, str], tuple[int, int]] = {}  # (scope, period) -> (spent, limit) units
        self.counts = dict(backend_errors=0, fail_open=0, fail_closed=0, refused_budget=0, refused_rate=0,
                           refused_deployment=0, settle_failures=0)
        self._down_until = 0.0
        self.down = False  # the shared store is in an outage (hedgeway_limits_backend_up)
        self._tasks: set[asyncio.Task] = set()
        self._pending: list[tuple[Ticket, tuple]] = []  # Redis settlements waiting for the flusher
        self._flusher: asyncio.Task | None = None
        self._prefix = os.urandom(5).hex()
        self._ids = count(1)

    # --- the store, with the fail mode ---
    async def _reserve(self, rid: str, budgets: list, windows: list, *lease: Any) -> tuple[Verdict, Any]:
        store = self.store
        if store is self.local:
            return store.reserve_now(rid, budgets, windows), store
        if time.monotonic() >= self._down_until:
            try:
                verdict = await store.reserve(rid, budgets, windows, *lease)
                if self.down:
                    self.down = False
                    log.warning("limits backend (redis) answers again; shared limits restored")
                return verdict, store
            except StoreDown as exc:
                self._outage(exc)
        if self.cfg.fail == "closed":
            self.counts["fail_closed"] += 1
            raise LimitsUnavailable("The limits backend is unavailable, so the request cannot be admitted; "
                                    "retry shortly.", headers={"retry-after": "1"})
        self.counts["fail_open"] += 1
        return self.local.reserve_now(rid, budgets, windows), self.local

    def _outage(self, exc: Exception) -> None:
        self.counts["backend_errors"] += 1
        self._down_until = time.monotonic() + self.cfg.redis.retry_interval
        if not self.down:
            self.down = True
            log.error("limits backend (redis) unavailable (%s); failing %s until it answers",
                      exc, "closed (503)" if self.cfg.fail == "closed" else "open (local limits)")

    def restore(self, ledger: Any, ring: Any) -> None:
        """Memory backend: seed this period's spent counters from the ledger (restore.py), so a restart
        does not forget a budget. Redis keeps its own."""
        if self.store is not self.local:
            return
        users = ring.users() if ring is not None else {}
        for (scope, period), units in current_spend(ledger, users, time.time()).items():
            self.local.seed(scope, period, units)

    # --- admission ---
    async def admit(self, principal: Principal, model: str, body: dict[str, Any]) -> Ticket | None:
        rules = self.rules.rules(principal, model)
        if rules is None:
            return None
        budgets = rules.budgets
        prompt = self.est.prompt_tokens(body)
        out, given = self.est.output_tokens(body)
        ticket = Ticket(f"{self._prefix}-{next(self._ids):x}", budgets, tokens=prompt + (out if given else 0),
                        store=self.local, out=out if budgets else 0)
        if not budgets and not rules.windows:
            return ticket  # only deployment limits: nothing to reserve yet
        inp, outp = rules.price
        amount = to_units((prompt * inp + out * outp) * self.margin)
        n = self.leases.requests if self.leases is not None else 1  # a lease asks for n requests' worth
        bspecs = [(scope, period, limit, amount, amount * n) for scope, period, limit in rules.bases]
        wspecs = []
        for name, limit, tokens in rules.windows:
            if tokens:
                weight = min(ticket.tokens, limit)
                wspecs.append((name, limit, weight, weight * n))
                ticket.tpm.append(name)
            else:
                wspecs.append((name, limit, 1, n))
        deadline, delay = 0.0, 0.02
        while True:
            if self.leases is not None:
                verdict, store = await self._leased(ticket, rules.items, bspecs, wspecs)
            else:
                verdict, store = await self._reserve(ticket.rid, bspecs, wspecs)
            if verdict.ok:
                if ticket.leased is None:
                    ticket.keys = verdict.keys
                else:
                    ticket.tpm = []  # the lease's return counts the tokens
                ticket.store = store
                return ticket
            if verdict.window >= 0:
                self.counts["refused_rate"] += 1
                name, limit = wspecs[verdict.window][:2]
                unit = "requests" if name.endswith(":rpm") else "tokens"
                raise RateLimited(f"Rate limit reached for {name[:-4]}: {limit} {unit} per "
                                  f"{self.cfg.window:g} s. Retry after {verdict.retry_ms / 1000:.1f} s.",
                                  headers={"retry-after": str(max(1, -(-verdict.retry_ms // 1000)))})
            if verdict.soft and self.cfg.budget_wait > 0:
                now = time.monotonic()
                deadline = deadline or now + self.cfg.budget_wait
                if now < deadline:
                    await asyncio.sleep(min(delay, deadline - now))
                    delay = min(delay * 1.5, 0.25)
                    continue
            self.counts["refused_budget"] += 1
            raise self._exceeded(budgets[verdict.budget], verdict, amount)

    async def _leased(self, ticket: Ticket, items: tuple[str, ...], bspecs: list, wspecs: list) -> tuple[Verdict, Any]:
        """Admission on this replica's leases; when they lack room, this request's reservation asks Redis for
        new ones (one request per set of budgets and windows at a time: the others wait for its leases)."""
        leases = self.leases
        amounts = [s[3] for s in bspecs] + [s[2] for s in wspecs]
        while True:
            taken = leases.take(items, amounts)
            if taken is not None:
                ticket.leased = taken
                return _LEASED, self.store
            renewing = leases.renewing.get(items)
            if renewing is None:
                break
            await renewing.wait()
        renewing = leases.renewing[items] = asyncio.Event()
        try:
            if self._pending:  # leases just closed go back first: their rest may be the room this needs
                await self._drain()
            sent = time.monotonic()
            verdict, store = await self._reserve(ticket.rid, bspecs, wspecs, leases.share, leases.hold_ms)
        finally:
            del leases.renewing[items]
            renewing.set()
        if verdict.ok and store is self.store:
            units = ["usd"] * len(bspecs) + [_UNITS[s[0].rsplit(":", 1)[1]] for s in wspecs]
            keys = verdict.keys + [s[0] for s in wspecs]
            ticket.leased = leases.install(items, units, keys, [*ticket.budgets, *[None] * len(wspecs)],
                                           ticket.rid, verdict.grants, amounts, sent)
        return verdict, store

    def _exceeded(self, b: Budget, v: Verdict, amount: int) -> BudgetExceeded:
        limit = _units(b.limit)
        resets = f"It resets at {iso(v.end)}." if v.end is not None else "It is a total budget and does not reset."
        msg = (f"Budget exceeded: {b.scope} has a {b.period} budget of {_usd(limit)} with {_usd(limit - v.spent)} "
               f"left ({_usd(v.held)} of it reserved by requests in flight); this request may cost up to "
               f"{_usd(amount)}. {resets}")
        retry = 1 if v.soft else (max(1, int(v.end - time.time())) if v.end is not None else None)
        return BudgetExceeded(msg, headers={"retry-after": str(retry)} if retry else None)

    async def deployment(self, dep: Deployment, ticket: Ticket | None) -> None:
        if ticket is None or (dep.rpm is None and dep.tpm is None):
            return
        ticket.attempts += 1
        member = f"{ticket.rid}:{ticket.attempts}"
        specs = []
        if dep.rpm:
            specs.append((f"deployment:{dep.id}:rpm", dep.rpm, 1, 1))
        if dep.tpm:
            weight = min(max(ticket.tokens, 1), dep.tpm)
            specs.append((f"deployment:{dep.id}:tpm", dep.tpm, weight, weight))
        verdict, store = await self._reserve(member, [], specs)
        if not verdict.ok:
            self.counts["refused_deployment"] += 1
            kind = specs[verdict.window][0].rsplit(":", 1)[1]
            raise UpstreamRateLimited(f"deployment reached its {kind} limit (Hedgeway)", deployment=dep.id,
                                      retry_after=verdict.retry_ms / 1000)
        if dep.tpm:
            ticket.deps.append((store, specs[-1][0], member))

    # --- settlement ---
    def settle(self, ticket: Ticket | None, usage: Usage, cost: Decimal) -> None:
        try:
            if ticket is None:
                return
            actual = to_units(cost) if cost else 0
            tokens = usage.prompt_tokens + usage.completion_tokens
            if ticket.leased is not None:
                self.leases.settle(ticket.leased, actual, tokens)
            if not (ticket.keys or ticket.tpm or ticket.deps):
                return
            windows = [(name, ticket.rid, tokens, False) for name in ticket.tpm]
            budgets = [(k, _units(b.limit)) for k, b in zip(ticket.keys, ticket.budgets)]
            # Deployment TPM: the attempt that answered used the tokens; earlier attempts failed.
            for i, (store, name, member) in enumerate(ticket.deps):
                entry = [(name, member, tokens if i == len(ticket.deps) - 1 else 0, False)]
                if store is not ticket.store:
                    self._settle_in(store, ticket, [], 0, entry)
                else:
                    windows += entry
            self._settle_in(ticket.store, ticket, budgets, actual, windows)
        except Exception:  # noqa: BLE001 - settle must never fail a request
            log.exception("settling admission ticket failed")

    def _settle_in(self, store: Any, ticket: Ticket, budgets: list, actual: int, windows: list) -> None:
        if store is self.local:
            self._settled(ticket, self.local.settle_now(ticket.rid, budgets, actual, windows, self.thresholds))
            return
        self._enqueue(ticket, (ticket.rid, budgets, actual, windows))

    def _give_back(self, lease: Lease) -> None:
        """Return a closed, drained lease: Redis releases it and counts what was spent on it."""
        if lease.budget is not None:
            b = lease.budget
            item = (lease.rid, [(lease.key, _units(b.limit))], lease.used, [])
            self._enqueue(Ticket(lease.rid, (b,), [lease.key]), item)
        else:
            self._enqueue(Ticket(lease.rid), (lease.rid, [], 0, [(lease.key, lease.rid, lease.used, True)]))

    def _enqueue(self, ticket: Ticket, item: tuple) -> None:
        # Redis: queued and sent with the other settlements of this moment in one script call, after the
        # response (a settlement lowers `held` and raises `spent` by the same request: waiting a loop tick
        # never lets more through than the reservation already held back).
        self._pending.append((ticket, item))
        self._start_flusher()

    def _start_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
            self._tasks.add(self._flusher)
            self._flusher.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        """Send queued settlements in batches of SETTLE_BATCH until none is left."""
        try:
            await asyncio.sleep(0)  # let the settlements of this loop iteration join the batch
            while self._pending:
                batch, self._pending = self._pending[:SETTLE_BATCH], self._pending[SETTLE_BATCH:]
                await self._settle_batch(batch)
        finally:
            self._flusher = None

    async def _drain(self) -> None:
        """Send the queued settlements now, once; when Redis does not take them they stay queued for the
        flusher (which retries)."""
        batch, self._pending = self._pending[:SETTLE_BATCH], self._pending[SETTLE_BATCH:]
        try:
            results = await self.store.settle([item for _, item in batch], self.thresholds)
        except StoreDown as exc:
            self._outage(exc)
            self._pending[:0] = batch
            self._start_flusher()
            return
        for (ticket, _), result in zip(batch, results):
            self._settled(ticket, result)

    async def _settle_batch(self, batch: list[tuple[Ticket, tuple]]) -> None:
        """One script call for the batch; one Redis does not take is retried (SETTLE_RETRIES), then dropped:
        its reservations expire after reservation_ttl."""
        for delay in (*SETTLE_RETRIES, None):
            try:
                results = await self.store.settle([item for _, item in batch], self.thresholds)
            except StoreDown as exc:
                self._outage(exc)
                if delay is not None:
                    await asyncio.sleep(delay)
                    continue
                self.counts["settle_failures"] += len(batch)
                log.error("could not settle %d requests in redis; their reservations expire after %g s",
                          len(batch), self.cfg.reservation_ttl)
                return
            for (ticket, _), result in zip(batch, results):
                self._settled(ticket, result)
            return

    def _settled(self, ticket: Ticket, result: tuple[list, list]) -> None:
        spents, fired = result
        for b, spent in zip(ticket.budgets, spents):
            if spent is not None:
                self.use[(b.scope, b.period)] = (spent, _units(b.limit))
        for i, th in fired:
            b = ticket.budgets[i]
            start = int(ticket.keys[i].rsplit(":", 1)[1])
            end = bounds(b.period, start)[1]
            self.alerter.fire(payload(b.scope, b.period, th, to_usd(spents[i]), b.limit, start, iso(end),
                                      self.cfg.alerts.format))

    async def close(self) -> None:
        if self.leases is not None:
            self.leases.close_all()  # returned once their requests settle (before this point, at shutdown)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.alerter.drain()
        if self.store is not self.local:
            await self.store.close()

    def render_metrics(self) -> str:
        """Prometheus text lines for the limits (limits/metrics.py)."""
        return render(self)
