"""A routed model name (e.g. `auto`): its tiers, its router, and the plan order for each decision.

Decision: the router scores the prompt in [0, 1]; the route's thresholds turn the score into a
complexity class (simple < medium < complex) and the class into a tier (a class with no tier of its own
goes to the next tier up, or the top one). A tier whose model lacks a capability the request needs
(tools, vision, context length; declared under `capabilities`) is passed over, upwards first.

Fallback order (documented contract): the chosen tier, then the more capable tiers in ascending order,
then the cheaper tiers in descending order. A failing cheap tier is thus covered by a better model, never
a worse one; only when every better tier failed does the request degrade to a cheaper one rather than
fail. Tiers lacking a needed capability are left out of the plan altogether (they would reject it).
Everything that does not depend on the prompt (orders, deadlines, prices) is computed here, at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Mapping

from hedgeway.routing.config import TIERS, CapabilitiesIn, RouteIn
from hedgeway.routing.features import Prompt, estimate_tokens, prompt_of
from hedgeway.routing.heuristic import HeuristicRouter
from hedgeway.routing.registry import ROUTERS
from hedgeway.types import Deployment

Group = tuple[Deployment, ...]
_ALL = CapabilitiesIn()


@dataclass(frozen=True, slots=True)
class Slot:
    tier: str
    model: str
    group: Group
    caps: CapabilitiesIn
    price: Decimal  # input + output USD per million tokens of the group's cheapest deployment

    def fits(self, p: Prompt) -> str | None:
        """None when this tier can serve the prompt, else what it lacks."""
        if p.tools and not self.caps.tools:
            return "tools"
        if p.vision and not self.caps.vision:
            return "vision"
        if self.caps.context is not None and estimate_tokens(p) > self.caps.context:
            return "context"
        return None


class RoutedModel:
    def __init__(self, cfg: RouteIn, models: Mapping[str, Group]):
        self.name = cfg.name
        self.router = ROUTERS[cfg.router](cfg.options)
        self.router_name = cfg.router
        by_price = getattr(self.router, "order_by_price", False)
        # the cost router asks for "cheapest"; the complexity class still comes from prompt features
        self.classifier = HeuristicRouter() if by_price else self.router
        t = cfg.thresholds
        self.thresholds = (t.medium, t.complex) if t else tuple(self.classifier.thresholds)
        slots = [Slot(tier, cfg.tiers[tier], models[cfg.tiers[tier]], cfg.capabilities.get(cfg.tiers[tier], _ALL),
                      min(d.price.input + d.price.output for d in models[cfg.tiers[tier]]))
                 for tier in TIERS if tier in cfg.tiers]
        if by_price:
            slots.sort(key=lambda s: s.price)
        self.slots = slots
        self.by_price = by_price
        n = len(slots)
        self.orders = [[i, *range(i + 1, n), *range(i - 1, -1, -1)] for i in range(n)]
        index = {s.tier: i for i, s in enumerate(slots)}
        # complexity class -> slot index: its own tier, else the next one up, else the top one
        self.class_slot = {}
        for k, cls in enumerate(TIERS):
            up = [index[c] for c in TIERS[k:] if c in index]
            self.class_slot[cls] = 0 if by_price else (up[0] if up else max(index.values()))
        self.deadlines: dict[str, tuple[float | None, float | None]] = {}
        for s in slots:  # per tier, then per deployment id (more specific wins)
            sla = cfg.sla.get(s.tier)
            if sla is not None:
                for d in s.group:
                    self.deadlines[d.id] = (sla.ttft, sla.total)
        for s in slots:
            for d in s.group:
                if d.id in cfg.sla:
                    self.deadlines[d.id] = (cfg.sla[d.id].ttft, cfg.sla[d.id].total)

        self.hedge_delay = cfg.hedge.delay if cfg.hedge else None
        # a router with a proof (`trained`) decides only once proven; until then: the default tier
        self.gate: dict[str, Any] | None = getattr(self.router, "gate", None)
        self.needs_embedding = getattr(self.router, "needs_embedding", False)
        self.default_slot = index[cfg.default] if cfg.default else max(index.values())

    def complexity(self, score: float) -> str:
        medium, complex_ = self.thresholds
        return "complex" if score >= complex_ else "medium" if score >= medium else "simple"

    def decide(self, body: Any, embedding: Any = None) -> tuple[list[Slot], dict[str, Any]]:
        """The slots to try, in order, and the decision record for the ledger / header. `embedding`: the
        request's MiniLM vector, for routers that read it (`needs_embedding`)."""
        prompt = prompt_of(body or {})
        held = self._held(embedding)
        if held is not None:  # unproven (or no embedding to score with): the default tier, and why
            chosen, route = self.default_slot, {"router": self.router_name, "tier": self.slots[self.default_slot].tier,
                                                "proven": False, "reason": held}
        else:
            prompt.embedding = embedding
            score = self.router.score(prompt)
            cls = self.complexity(score if self.classifier is self.router else self.classifier.score(prompt))
            chosen = self.class_slot[cls]
            route = {"router": self.router_name, "tier": self.slots[chosen].tier, "score": score, "complexity": cls}
        order = self.orders[chosen]
        fit = [i for i in order if self.slots[i].fits(prompt) is None]
        if fit and fit[0] != chosen:
            route["reason"] = f"{self.slots[chosen].tier} lacks {self.slots[chosen].fits(prompt)}"
            route["tier"] = self.slots[fit[0]].tier
        route["model"] = self.slots[fit[0] if fit else chosen].model
        return [self.slots[i] for i in (fit or order)], route

    def _held(self, embedding: Any) -> str | None:
        if self.gate is not None and not self.gate["proven"]:
            return self.gate["why"]
        if self.needs_embedding and embedding is None:
            return "no embedding for this request (embedder unavailable)"
        return None
