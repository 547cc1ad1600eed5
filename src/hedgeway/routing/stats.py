"""Router statistics: requests per route/tier, SLA fallbacks per deployment, breaker states.

Counters are plain dict increments on the request path; rendering (Prometheus text for /metrics, JSON
for GET /v1/router/stats) happens only when asked.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hedgeway.routing.health import CLOSED, HALF_OPEN, OPEN, Health

_STATE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


class RouterStats:
    def __init__(self, health: Health):
        self.health = health
        self.tiers: Counter[tuple[str, str]] = Counter()  # (route, tier) -> requests
        self.first: Counter[str] = Counter()  # deployment planned first -> requests
        self.sla: Counter[str] = Counter()  # deployment -> SLA deadlines missed (fell back)
        self.skipped: Counter[str] = Counter()  # deployment -> plans it was left out of (breaker open)
        self.proof: dict[str, dict[str, Any]] = {}  # route -> its router's proof (routers that carry one)

    def routed(self, route: str, tier: str, first: str | None) -> None:
        self.tiers[(route, tier)] += 1
        if first is not None:
            self.first[first] += 1

    def sla_missed(self, dep_id: str) -> None:
        self.sla[dep_id] += 1

    def as_dict(self) -> dict[str, Any]:
        routes: dict[str, dict[str, int]] = {}
        for (route, tier), n in sorted(self.tiers.items()):
            routes.setdefault(route, {})[tier] = n
        return {"routes": routes, "first_choice": dict(self.first), "sla_fallbacks": dict(self.sla),
                "breaker_skips": dict(self.skipped), "deployments": self.health.snapshot(), "proof": self.proof}

    def render_metrics(self) -> str:
        out = ["# HELP hedgeway_router_requests_total Routed requests by route and chosen tier.",
               "# TYPE hedgeway_router_requests_total counter"]
        out += [f'hedgeway_router_requests_total{{route="{_label(r)}",tier="{t}"}} {n}'
                for (r, t), n in sorted(self.tiers.items())]
        out += ["# HELP hedgeway_router_first_choice_total Requests whose plan started at this deployment.",
                "# TYPE hedgeway_router_first_choice_total counter"]
        out += [f'hedgeway_router_first_choice_total{{deployment="{_label(d)}"}} {n}' for d, n in sorted(self.first.items())]
        out += ["# HELP hedgeway_router_sla_fallbacks_total Attempts abandoned at their SLA deadline.",
                "# TYPE hedgeway_router_sla_fallbacks_total counter"]
        out += [f'hedgeway_router_sla_fallbacks_total{{deployment="{_label(d)}"}} {n}' for d, n in sorted(self.sla.items())]
        out += ["# HELP hedgeway_breaker_state Circuit breaker: 0 closed, 1 half-open, 2 open.",
                "# TYPE hedgeway_breaker_state gauge"]
        snap = self.health.snapshot()
        out += [f'hedgeway_breaker_state{{deployment="{_label(d)}"}} {_STATE[h["state"]]}' for d, h in snap.items()]
        out += ["# HELP hedgeway_deployment_error_rate EWMA share of failed calls.",
                "# TYPE hedgeway_deployment_error_rate gauge"]
        out += [f'hedgeway_deployment_error_rate{{deployment="{_label(d)}"}} {h["error_rate"]}' for d, h in snap.items()]
        out += self._proof_metrics()
        return "\n".join(out) + "\n"

    def _proof_metrics(self) -> list[str]:
        out = []
        for name, help_, key in (("proven", "1 when the route's router is proven on its labels, else 0 (default tier).",
                                  "proven"),
                                 ("labels", "Labels the route's router was trained and proven on.", "n"),
                                 ("apgr", "Cross-validated APGR of the route's router (random = 0.5).", "apgr"),
                                 ("apgr_ci_low", "Lower bound of that APGR's 95% interval.", None),
                                 ("random_band_top", "Top of the APGR band random labels reach at that count.", None)):
            out += [f"# HELP hedgeway_router_{name} {help_}", f"# TYPE hedgeway_router_{name} gauge"]
            for route, p in sorted(self.proof.items()):
                value = p[key] if key else (p["ci"][0] if name == "apgr_ci_low" else p["random_band"][1])
                out.append(f'hedgeway_router_{name}{{route="{_label(route)}"}} {float(value):g}')
        return out
