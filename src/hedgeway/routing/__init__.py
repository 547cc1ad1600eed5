"""Routing: which deployments serve a request, in what order.

`Planner.plan(model_name, body)` is pure (no I/O): it returns a `Plan` — the ordered groups to try (the
requested model's deployments ordered by the balancing strategy, then each fallback model's) and the
routing decision for the ledger and the `x-hedgeway-route` header (None when there was nothing to decide).
Balancers are picked from `BALANCERS` by name; routers (for routed names such as `auto`, see `tiers`) from
`ROUTERS`. Deployments whose circuit breaker is open are left out of plans (`health`), unless that would
leave nothing to try. `Plan.guard` carries the SLA deadlines and the health reporting for the fallback loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from hedgeway.errors import NotFound
from hedgeway.routing.config import RouterIn
from hedgeway.routing.health import Guard, Health
from hedgeway.routing.registry import ROUTERS
from hedgeway.routing.stats import RouterStats
from hedgeway.routing.tiers import RoutedModel
from hedgeway.types import Deployment

__all__ = ["BALANCERS", "ROUTERS", "Plan", "Planner", "least_in_flight", "weighted"]

Group = tuple[Deployment, ...]


@dataclass(slots=True)
class Plan:
    groups: list[Group]
    route: dict[str, Any] | None = None  # the decision (router, score, tier), when a router made one
    guard: Guard | None = None  # SLA deadlines + health reporting for call_with_fallback


def least_in_flight(group: Group, inflight: Mapping[str, int]) -> Group:
    """Fewest requests in flight per unit of weight first; ties broken at random so load spreads."""
    return tuple(sorted(group, key=lambda d: (inflight.get(d.id, 0) / d.weight, random.random())))


def weighted(group: Group, inflight: Mapping[str, int]) -> Group:
    """A weighted random order (Efraimidis–Spirakis keys): the first pick is proportional to weight."""
    return tuple(sorted(group, key=lambda d: random.random() ** (1.0 / d.weight), reverse=True))


BALANCERS: dict[str, Callable[[Group, Mapping[str, int]], Group]] = {
    "least-in-flight": least_in_flight,
    "weighted": weighted,
}


class Planner:
    def __init__(self, models: Mapping[str, Group], fallbacks: Mapping[str, Sequence[str]], strategy: str,
                 router: RouterIn | None = None):
        router = router or RouterIn()
        self.models = models
        self.fallbacks = fallbacks
        self.balance = BALANCERS[strategy]
        self.strategy = strategy
        self.inflight: dict[str, int] = {d.id: 0 for group in models.values() for d in group}
        self.health = Health(router.breaker, router.ewma_alpha, self.inflight)
        self.stats = RouterStats(self.health)
        self.guard = Guard(self.health, {}, self.stats)
        self.canaries: Any = None  # a hedgeway.canary.CanaryBook, set by the gateway
        self._guards: dict[tuple[int, str], Guard] = {}  # route guards extended to a canary's candidate
        self.routes: dict[str, tuple[RoutedModel, Guard]] = {}
        for r in router.routes:
            routed = RoutedModel(r, models)
            self.routes[r.name] = (routed, Guard(self.health, routed.deadlines, self.stats, routed.hedge_delay))
            if routed.gate is not None:
                self.stats.proof[r.name] = {"router": r.router, **routed.gate}

    def names(self) -> list[str]:
        """Every model name a client may send: the configured models, then the routed names."""
        return [*self.models, *self.routes]

    def render_metrics(self) -> str:
        """Prometheus text of the router's counters and the deployments' health (for /metrics)."""
        return self.stats.render_metrics()

    def _order(self, group: Group) -> Group:
        return group if len(group) == 1 else self.balance(group, self.inflight)

    def _healthy(self, groups: list[Group]) -> list[Group]:
        usable = self.health.usable
        kept = [g for g in (tuple(d for d in group if usable(d.id)) for group in groups) if g]
        if not kept:  # every breaker open: trying beats refusing outright
            return groups
        if sum(map(len, kept)) != sum(map(len, groups)):
            left = {d.id for g in kept for d in g}
            for group in groups:
                for d in group:
                    if d.id not in left:
                        self.stats.skipped[d.id] += 1
        return kept

    def wants_embedding(self, model_name: str) -> bool:
        """Whether plans for this name read the request's embedding (a proven `trained` route)."""
        routed = self.routes.get(model_name)
        if routed is not None and self.canaries is not None and model_name in self.canaries.by_route:
            return True  # a router version on canary may read it even when the configured one does not
        return routed is not None and routed[0].needs_embedding and routed[0].gate["proven"]

    def plan(self, model_name: str, body: Mapping[str, Any] | None = None, canary: bool = True,
             embedding: Any = None) -> Plan:
        """Ordered groups to try; raises NotFound (404) for a model name the config does not declare.
        `body` is the request (routers read the prompt from it); `canary=False`: the baseline plan;
        `embedding`: the request's MiniLM vector when `wants_embedding`."""
        routed = self.routes.get(model_name)
        if routed is not None:
            route, guard = routed
            on = canary and self.canaries is not None
            version, rtag = self.canaries.route_arm(model_name) if on else (None, None)  # a router version's canary
            slots, decision = (version or route).decide(body, embedding)
            raw, tag, at = self._canary([s.group for s in slots], canary)
            tag = tag or rtag
            if at is not None:  # the candidate is held to the SLA of the tier it stands in for
                guard = self._candidate_guard(guard, raw[at], raw[at + 1][0].id)
            groups = self._healthy([self._order(g) for g in raw])
            self.stats.routed(route.name, decision["tier"], groups[0][0].id)
            return Plan(groups, {**decision, **tag} if tag else decision, guard)
        group = self.models.get(model_name)
        if group is None:
            raise NotFound(f"The model `{model_name}` does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        raw, tag, _ = self._canary([group, *(self.models[name] for name in self.fallbacks.get(model_name, ()))],
                                   canary)
        return Plan(self._healthy([self._order(g) for g in raw]), tag, self.guard)

    def _canary(self, groups: list[Group], on: bool) -> tuple[list[Group], dict[str, Any] | None, int | None]:
        """A live canary's candidate placed in front of its model's group (see hedgeway.canary)."""
        if not on or self.canaries is None or not self.canaries.by_model:
            return groups, None, None
        return self.canaries.apply(groups)

    def _candidate_guard(self, guard: Guard, candidate: Group, baseline_id: str) -> Guard:
        key = (id(guard), candidate[0].id)
        derived = self._guards.get(key)
        if derived is None:
            sla = guard.deadlines.get(baseline_id)
            deadlines = {**guard.deadlines, **({d.id: sla for d in candidate} if sla else {})}
            derived = self._guards[key] = Guard(self.health, deadlines, self.stats, guard.hedge_delay)
        return derived
