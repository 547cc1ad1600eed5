"""The `router:` config section: routed model names (tiers + which router decides), SLAs, health.

    router:
      routes:
        - name: auto                       # the model name clients send
          router: heuristic                # heuristic | learned | random | cost | trained  (ROUTERS)
          tiers: {simple: llama-local, medium: gpt-4o-mini, complex: gpt-4o}   # tier -> model name
          thresholds: {medium: 0.35, complex: 0.65}   # score >= medium -> medium, >= complex -> complex
          options: {}                      # router-specific (learned/trained: {model: path}, random: {seed: 1})
          default: complex                 # trained: the tier every request goes to while unproven (top tier)
          capabilities: {llama-local: {tools: false, vision: false, context: 8192}}
          sla: {simple: {ttft: 1.0, total: 20}}       # per tier (or deployment id): seconds
          hedge: {delay: 0.5}              # optional: race the next tier's call after this many seconds
          learn: {share: 0.02, judge: gpt-4o, daily_budget: 5}   # optional: labels (routing.learner)
      breaker: {failures: 5, cooldown: 30, slow_call: 10, slow_rate: 0.5, window: 20}
      ewma_alpha: 0.2

Cross-checks against `models:` (tier model names exist, route names do not clash) happen in
`hedgeway.config._build` through `check_routes`, so errors name their path.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, Mapping

from pydantic import Field, model_validator

from hedgeway.errors import ConfigError
from hedgeway.strict import Strict

TIERS = ("simple", "medium", "complex")  # cheapest to most capable; also the `complexity` classes
Tier = Literal["simple", "medium", "complex"]


class ThresholdsIn(Strict):
    medium: float = Field(ge=0, le=1)
    complex: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self):
        if self.complex < self.medium:
            raise ValueError("complex must be >= medium")
        return self


class CapabilitiesIn(Strict):
    tools: bool = True
    vision: bool = True
    context: int | None = Field(None, ge=1)  # tokens (prompt + max_tokens); None: unlimited


class SlaIn(Strict):
    ttft: float | None = Field(None, gt=0)  # streams: seconds to the first event
    total: float | None = Field(None, gt=0)  # non-streaming: seconds to the whole answer


class HedgeIn(Strict):
    delay: float = Field(gt=0)  # seconds before the plan's second choice is started in parallel


class LearnIn(Strict):
    """Labels from the route's own traffic (hedgeway.routing.learner): a `share` of its requests is answered
    again by the other tier and graded by the `judge` model, within `daily_budget` USD per UTC day."""

    share: float = Field(gt=0, le=1)
    judge: str = Field(min_length=1)  # a configured model name
    daily_budget: Decimal = Field(gt=0)
    max_in_flight: int = Field(4, ge=1)  # labelling tasks at once; beyond it a sampled request is skipped


class RouteIn(Strict):
    name: str = Field(min_length=1)
    router: str = "heuristic"
    tiers: dict[Tier, str] = Field(min_length=1)
    thresholds: ThresholdsIn | None = None  # None: the router's own defaults
    options: dict[str, Any] = {}
    capabilities: dict[str, CapabilitiesIn] = {}
    sla: dict[str, SlaIn] = {}
    hedge: HedgeIn | None = None
    learn: LearnIn | None = None
    default: Tier | None = None  # where an unproven router's route sends everything (None: the top tier)


class BreakerIn(Strict):
    failures: int = Field(5, ge=1)  # consecutive failures that open the breaker
    cooldown: float = Field(30.0, gt=0)  # seconds open before a half-open probe is let through
    slow_call: float | None = Field(None, gt=0)  # a call slower than this (seconds) counts as slow
    slow_rate: float = Field(0.5, gt=0, le=1)  # open when this share of the last `window` calls was slow
    window: int = Field(20, ge=2)


class RouterIn(Strict):
    routes: list[RouteIn] = []
    breaker: BreakerIn = BreakerIn()
    ewma_alpha: float = Field(0.2, gt=0, le=1)


def check_routes(router: RouterIn, models: Mapping[str, Any], rename=lambda p: p) -> None:
    """Cross-validate routes against the declared model names; raises ConfigError naming the path."""
    from hedgeway.routing.registry import ROUTERS

    seen: set[str] = set()
    dep_ids = {d.id for group in models.values() for d in group}
    for i, route in enumerate(router.routes):
        here = f"router.routes[{i}]"
        if route.name in models or route.name in seen:
            raise ConfigError(rename(f"{here}.name"), f"{route.name!r} is already a model or route name")
        seen.add(route.name)
        if route.router not in ROUTERS:
            raise ConfigError(rename(f"{here}.router"),
                              f"unknown router {route.router!r}; known: {', '.join(sorted(ROUTERS))}")
        for tier, name in route.tiers.items():
            if name not in models:
                raise ConfigError(rename(f"{here}.tiers.{tier}"), f"unknown model name {name!r}")
        if route.default is not None and route.default not in route.tiers:
            raise ConfigError(rename(f"{here}.default"), f"{route.default!r} is not a tier of this route")
        for name in route.capabilities:
            if name not in route.tiers.values():
                raise ConfigError(rename(f"{here}.capabilities.{name}"), "not a model name of this route's tiers")
        for key in route.sla:
            if key not in route.tiers and key not in dep_ids:
                raise ConfigError(rename(f"{here}.sla.{key}"), "neither a tier of this route nor a deployment id")
        if route.learn is not None and route.learn.judge not in models:
            raise ConfigError(rename(f"{here}.learn.judge"), f"unknown model name {route.learn.judge!r}")
        if route.learn is not None and len(set(route.tiers.values())) < 2:
            raise ConfigError(rename(f"{here}.learn"), "labels compare two tiers; this route has one model")
        try:
            ROUTERS[route.router].check(route)
        except ValueError as exc:
            raise ConfigError(rename(f"{here}.options"), str(exc)) from None
