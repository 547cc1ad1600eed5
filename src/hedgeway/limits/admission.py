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

from hedgeway.errors import BudgetExceeded, LimitsUnavailable, PermissionDenied, RateLimited, UpstreamRateLimited
from hedgeway.limits.alerts import Alerter, payload
from hedgeway.limits.config import LimitsIn
from hedgeway.limits.estimate import Estimator, fmt_usd, max_prices, to_units, to_usd
from hedgeway.limits.memory import MemoryStore, Verdict
from hedgeway.limits.periods import bounds, iso
from hedgeway.limits.redis_store import RedisStore, StoreDown
from hedgeway.limits.restore import current_spend
from hedgeway.types import Budget, Deployment, Principal, RateLimit, Usage

log = logging.getLogger("hedgeway.limits")
_NO_PRICE = (Decimal(0), Decimal(0))
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


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _usd(units: int) -> str:
    return fmt_usd(to_usd(units))


def _redis(cfg: LimitsIn) -> RedisStore:
    r = cfg.redis
    return RedisStore(r.url, r.prefix, cfg.reservation_ttl, cfg.window, r.timeout, r.connect_timeout)


# `limits.backend` -> the shared store; None: the process's own memory store is the store. The memory store
# exists either way: it is what fail-open falls back to.
BACKENDS: dict[str, Callable[[LimitsIn], RedisStore | None]] = {"memory": lambda cfg: None, "redis": _redis}


class Limiter:
    def __init__(self, cfg: LimitsIn, models: dict[str, tuple[Deployment, ...]],
                 fallbacks: dict[str, list[str]]):
        self.cfg = cfg
        self.est = Estimator(cfg.bytes_per_token, cfg.default_max_tokens)
        self.margin = Decimal(1) + Decimal(str(cfg.reserve_margin))
        self.prices = max_prices(models, fallbacks)
        self.global_budgets = tuple(Budget("global", b.limit, b.period) for b in cfg.budgets)
        self.model_limits = {name: (RateLimit(f"model:{name}", r.rpm, r.tpm),) for name, r in cfg.models.items()}
        self.dep_limited = {name for name in models
                            if any(d.rpm or d.tpm for m in (name, *fallbacks.get(name, ())) for d in models[m])}
        self.local = MemoryStore(cfg.reservation_ttl, cfg.window)
        self.store = BACKENDS[cfg.backend](cfg) or self.local
        self.alerter = Alerter(cfg.alerts)
        self.thresholds = list(cfg.alerts.thresholds)
        self.use: dict[tuple[str, str], tuple[int, int]] = {}  # (scope, period) -> (spent, limit) units
        self.counts = dict(backend_errors=0, fail_open=0, fail_closed=0, refused_budget=0, refused_rate=0,
                           refused_deployment=0, settle_failures=0)
        self._down_until = 0.0
        self._down = False
        self._tasks: set[asyncio.Task] = set()
        self._pending: list[tuple[Ticket, tuple]] = []  # Redis settlements waiting for the flusher
        self._flusher: asyncio.Task | None = None
        self._prefix = os.urandom(5).hex()
        self._ids = count(1)

    # --- the store, with the fail mode ---
    async def _reserve(self, rid: str, budgets: list, windows: list) -> tuple[Verdict, Any]:
        store = self.store
        if store is self.local:
            return store.reserve_now(rid, budgets, windows), store
        if time.monotonic() >= self._down_until:
            try:
                verdict = await store.reserve(rid, budgets, windows)
                if self._down:
                    self._down = False
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
        if not self._down:
            self._down = True
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
        if principal.models is not None and model not in principal.models:
            raise PermissionDenied(f"This key is not allowed to use model '{model}'.", param="model",
                                   code="model_not_allowed")
        budgets = principal.budgets + self.global_budgets if principal.budgets else self.global_budgets
        limits = self.model_limits.get(model, ())
        if principal.limits:
            limits = principal.limits + limits
        if not budgets and not limits and model not in self.dep_limited:
            return None
        prompt = self.est.prompt_tokens(body)
        out, given = self.est.output_tokens(body)
        ticket = Ticket(f"{self._prefix}-{next(self._ids):x}", budgets, tokens=prompt + (out if given else 0),
                        store=self.local, out=out if budgets else 0)
        if not budgets and not limits:
            return ticket  # only deployment limits: nothing to reserve yet
        inp, outp = self.prices.get(model, _NO_PRICE)
        amount = to_units((prompt * inp + out * outp) * self.margin)
        bspecs = [(b.scope, b.period, _units(b.limit), amount) for b in budgets]
        wspecs = []
        for lim in limits:
            if lim.rpm:
                wspecs.append((f"{lim.scope}:rpm", lim.rpm, 1))
            if lim.tpm:
                name = f"{lim.scope}:tpm"
                wspecs.append((name, lim.tpm, min(ticket.tokens, lim.tpm)))
                ticket.tpm.append(name)
        deadline, delay = 0.0, 0.02
        while True:
            verdict, store = await self._reserve(ticket.rid, bspecs, wspecs)
            if verdict.ok:
                ticket.keys, ticket.store = verdict.keys, store
                return ticket
            if verdict.window >= 0:
                self.counts["refused_rate"] += 1
                name, limit, _ = wspecs[verdict.window]
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
            specs.append((f"deployment:{dep.id}:rpm", dep.rpm, 1))
        if dep.tpm:
            specs.append((f"deployment:{dep.id}:tpm", dep.tpm, min(max(ticket.tokens, 1), dep.tpm)))
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
            if ticket is None or not (ticket.keys or ticket.tpm or ticket.deps):
                return
            actual = to_units(cost) if cost else 0
            tokens = usage.prompt_tokens + usage.completion_tokens
            windows = [(name, ticket.rid, tokens) for name in ticket.tpm]
            budgets = [(k, _units(b.limit)) for k, b in zip(ticket.keys, ticket.budgets)]
            # Deployment TPM: the attempt that answered used the tokens; earlier attempts failed.
            for i, (store, name, member) in enumerate(ticket.deps):
                entry = [(name, member, tokens if i == len(ticket.deps) - 1 else 0)]
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
        # Redis: queued and sent with the other settlements of this moment in one script call, after the
        # response (a settlement lowers `held` and raises `spent` by the same request: waiting a loop tick
        # never lets more through than the reservation already held back).
        self._pending.append((ticket, (ticket.rid, budgets, actual, windows)))
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
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.alerter.drain()
        if self.store is not self.local:
            await self.store.close()

    # --- metrics ---
    def render_metrics(self) -> str:
        """Prometheus text lines for the limits: budget use per scope and period, backend health."""
        out = ["# HELP hedgeway_budget_used_ratio Settled spend / limit per budget (this period).",
               "# TYPE hedgeway_budget_used_ratio gauge"]
        for (scope, period), (spent, limit) in self.use.items():
            out.append(f'hedgeway_budget_used_ratio{{scope="{_label(scope)}",period="{period}"}} {spent / limit:.6f}')
        out += ["# HELP hedgeway_budget_spent_usd Settled spend per budget (this period).",
                "# TYPE hedgeway_budget_spent_usd gauge"]
        for (scope, period), (spent, _) in self.use.items():
            out.append(f'hedgeway_budget_spent_usd{{scope="{_label(scope)}",period="{period}"}} {to_usd(spent)}')
        for name, kind, value in (
                ("hedgeway_limits_backend_errors_total", "counter", self.counts["backend_errors"]),
                ("hedgeway_limits_fail_open_total", "counter", self.counts["fail_open"]),
                ("hedgeway_limits_fail_closed_total", "counter", self.counts["fail_closed"]),
                ("hedgeway_limits_settle_failures_total", "counter", self.counts["settle_failures"]),
                ("hedgeway_limits_backend_up", "gauge", 0 if self._down else 1),
                ("hedgeway_budget_alerts_total", "counter", self.alerter.fired),
                ("hedgeway_budget_alert_webhook_failures_total", "counter", self.alerter.failed)):
            out += [f"# TYPE {name} {kind}", f"{name} {value}"]
        out.append("# TYPE hedgeway_limits_refused_total counter")
        for reason in ("budget", "rate", "deployment"):
            out.append(f'hedgeway_limits_refused_total{{reason="{reason}"}} {self.counts["refused_" + reason]}')
        return "\n".join(out) + "\n"
