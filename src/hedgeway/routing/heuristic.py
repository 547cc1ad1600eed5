"""The heuristic router: a transparent complexity score from prompt features (see `features.cues`).

score = clip(Σ weight·cue, 0, 1); a greeting pulls it down. The weights are written out below so anyone
can read why a prompt was sent where it was; thresholds come from the route's config (defaults: 0.15 →
medium, 0.45 → complex). One strong cue (code, tools, a long prompt, clear reasoning or maths) is
enough to reach `complex`; small talk stays `simple`.
"""

from __future__ import annotations

from typing import Any

from hedgeway.routing.features import Prompt, cues

WEIGHTS: dict[str, float] = {
    "length": 0.5,  # ~8,000 characters alone → complex
    "code": 0.5,
    "reasoning": 0.4,
    "math": 0.35,
    "steps": 0.25,
    "constraints": 0.1,
    "questions": 0.05,
    "depth": 0.2,  # conversation depth: later turns build on context
    "tools": 0.5,
    "greeting": -0.6,
    "system": 0.1,
}


class HeuristicRouter:
    name = "heuristic"
    thresholds = (0.15, 0.45)

    def __init__(self, options: dict[str, Any] | None = None):
        self.weights = {**WEIGHTS, **(options or {}).get("weights", {})}

    @classmethod
    def check(cls, route) -> None:
        unknown = set(route.options) - {"weights"} or set(route.options.get("weights", {})) - set(WEIGHTS)
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)}; heuristic takes weights: {{cue: w}} with cues "
                             f"{', '.join(WEIGHTS)}")

    def score(self, prompt: Prompt) -> float:
        c = cues(prompt)
        total = sum(w * c[k] for k, w in self.weights.items())
        return round(min(max(total, 0.0), 1.0), 4)
