"""ROUTERS: router name → class. A router is built from its route's `options` and exposes

    score(prompt: features.Prompt) -> float   # in [0, 1]; higher means "needs the stronger model"
    thresholds: (medium, complex)             # defaults when the route gives none
    check(route) (classmethod)                # validate options at config time (raise ValueError)
    order_by_price (optional, default False)  # order tiers by price instead of simple < medium < complex
"""

from __future__ import annotations

from hedgeway.routing.baselines import CostRouter, RandomRouter
from hedgeway.routing.heuristic import HeuristicRouter
from hedgeway.routing.learned import LearnedRouter
from hedgeway.routing.trained import TrainedRouter

ROUTERS: dict[str, type] = {
    "heuristic": HeuristicRouter,
    "learned": LearnedRouter,
    "random": RandomRouter,
    "cost": CostRouter,
    "trained": TrainedRouter,
}
