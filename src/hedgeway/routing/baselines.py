"""Baseline routers: `random` (what every router is scored against) and `cost` (cheapest capable tier).

`random` gives each prompt a uniform score, so at a threshold t it sends a share ≈ 1 − t to the strong
side whatever the prompt: its APGR is ≈ 0.5 by construction. `cost` always asks for the cheapest tier
(score 0); the planner orders its tiers by price and skips those lacking a capability the request needs
(tools, vision, context length), so the answer is "the cheapest deployment that can serve this".
"""

from __future__ import annotations

import random
from typing import Any

from hedgeway.routing.features import Prompt


class RandomRouter:
    name = "random"
    thresholds = (1 / 3, 2 / 3)

    def __init__(self, options: dict[str, Any] | None = None):
        self._rng = random.Random((options or {}).get("seed"))

    @classmethod
    def check(cls, route) -> None:
        if set(route.options) - {"seed"}:
            raise ValueError("random takes only `seed`")

    def score(self, prompt: Prompt) -> float:
        return round(self._rng.random(), 4)


class CostRouter:
    name = "cost"
    thresholds = (1.0, 1.0)  # never above `simple` by score: capabilities alone move it up
    order_by_price = True

    def __init__(self, options: dict[str, Any] | None = None):
        pass

    @classmethod
    def check(cls, route) -> None:
        if route.options:
            raise ValueError("cost takes no options")

    def score(self, prompt: Prompt) -> float:
        return 0.0
