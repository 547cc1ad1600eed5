"""GET /v1/router/stats: routed requests per route/tier, first-choice deployments, SLA fallbacks,
breaker skips and each deployment's health (breaker state, EWMA latency/TTFT/error rate), as JSON.
Needs a valid key, like the rest of /v1 (deployment names are operational detail)."""

from __future__ import annotations

import orjson

from hedgeway.auth import bearer
from hedgeway.http.server import Request, Response


def router_stats_handler(gateway):
    async def router_stats(request: Request) -> Response:
        h = request.headers
        gateway.auth.authenticate(bearer(h.get("authorization"), h.get("x-api-key")))  # raises 401
        return Response(200, orjson.dumps(gateway.planner.stats.as_dict()))
    return router_stats
