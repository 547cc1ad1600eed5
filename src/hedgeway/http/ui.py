"""The dashboard: GET /ui serves the page (static HTML/JS/CSS from hedgeway/data/ui, no CDN), and
GET /ui/api/<panel> answers its JSON.

    /ui, /ui/, /ui/app.js, /ui/app.css      static; no key needed (they hold no data)
    /ui/api/spend?by=model|team|key|deployment&period=day|week|month|total&since=7d|2024-05-01
    /ui/api/routes|cache|latency|errors?since=…
    /ui/api/live                             budgets with alert state, breakers, canaries (this replica)

Every /ui/api call needs the master key or an admin key (a virtual key whose metadata says
{"role": "admin"}) as `Authorization: Bearer`: 401 without a valid key, 403 for any other key. The page
keeps the key in sessionStorage and sends it in that header; it never appears in a URL. Ledger reads
run in a thread (asyncio.to_thread), never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import orjson

from hedgeway.auth import MASTER, bearer
from hedgeway.errors import InvalidRequest, MethodNotAllowed, NotFound, PermissionDenied
from hedgeway.http.admin import query_params
from hedgeway.http.server import Request, Response
from hedgeway.keys.views import PERIODS, since_epoch
from hedgeway.ledger.dashboard import GROUPS, Dashboard
from hedgeway.limits.estimate import to_usd

PREFIX = "/ui"
API = "/ui/api/"
# file name -> content type; only these are served (no path is ever joined from the request)
ASSETS: dict[str, str] = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                          "app.css": "text/css; charset=utf-8"}
_PATHS = {"/ui": "index.html", "/ui/": "index.html", "/ui/app.js": "app.js", "/ui/app.css": "app.css"}
_SECURITY = {"cache-control": "no-store", "x-content-type-options": "nosniff",
             "content-security-policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}


def _assets() -> dict[str, bytes]:
    root = resources.files("hedgeway") / "data" / "ui"
    return {name: (root / name).read_bytes() for name in ASSETS}


def _choice(params: dict[str, str], name: str, default: str, allowed: Any) -> str:
    value = params.get(name) or default
    if value not in allowed:
        raise InvalidRequest(f"{name} must be one of {', '.join(allowed)}", param=name, code="invalid_value")
    return value


def _since(params: dict[str, str]) -> float | None:
    text = params.get("since")
    if not text or text == "all":
        return None
    try:
        return since_epoch(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="since", code="invalid_value") from None


class UI:
    def __init__(self, gateway: Any):
        self.gateway = gateway
        self.assets = _assets()  # read once: a few KB, served from memory
        self._dashboard: Dashboard | None = None
        self.api: dict[str, Callable[[dict[str, str]], Awaitable[Any]]] = {
            "spend": self.spend, "routes": self._panel("routes"), "cache": self._panel("cache"),
            "latency": self._panel("latency"), "errors": self._panel("errors"), "live": self.live,
        }

    def handles(self, path: str) -> bool:
        return path in _PATHS or path.startswith(API)

    async def __call__(self, request: Request) -> Response:
        if request.method != "GET":
            raise MethodNotAllowed(f"{request.method} is not allowed on {request.path[:200]}",
                                   headers={"allow": "GET"})
        name = _PATHS.get(request.path)
        if name is not None:
            return Response(200, self.assets[name], dict(_SECURITY), content_type=ASSETS[name])
        h = request.headers
        principal = self.gateway.auth.authenticate(bearer(h.get("authorization"), h.get("x-api-key")))  # 401
        if principal is not MASTER and (principal.metadata or {}).get("role") != "admin":
            raise PermissionDenied("The dashboard needs the master key or an admin key.", code="admin_only")
        handler = self.api.get(request.path[len(API):])
        if handler is None:
            raise NotFound(f"Unknown path {request.path[:200]}", code="unknown_url")
        return Response(200, orjson.dumps(await handler(_query_for(request))), {"cache-control": "no-store"})

    def dashboard(self) -> Dashboard:
        if self._dashboard is None:  # opened lazily: a gateway nobody watches keeps no extra connection
            self._dashboard = Dashboard(self.gateway.ledger.store)
        return self._dashboard

    async def spend(self, params: dict[str, str]) -> Any:
        by = _choice(params, "by", "model", GROUPS)
        period = _choice(params, "period", "day", PERIODS)
        since = _since(params)
        return await asyncio.to_thread(lambda: self.dashboard().spend(by, period, since))

    def _panel(self, name: str) -> Callable[[dict[str, str]], Awaitable[Any]]:
        async def panel(params: dict[str, str]) -> Any:
            since = _since(params)
            return await asyncio.to_thread(lambda: getattr(self.dashboard(), name)(since))
        return panel

    async def live(self, params: dict[str, str]) -> Any:
        """This replica's in-memory state: budget use (as last settled) against the alert thresholds,
        breaker state per deployment, canaries. No I/O."""
        adm = self.gateway.admission
        thresholds = sorted(getattr(adm, "thresholds", []) or [])
        budgets = []
        for (scope, period), (spent, limit) in sorted(getattr(adm, "use", {}).items()):
            ratio = spent / limit if limit else 0.0
            crossed = [t for t in thresholds if ratio >= t]
            state = "exhausted" if ratio >= 1 else ("alert" if crossed else "ok")
            budgets.append({"scope": scope, "period": period, "spent": format(to_usd(spent), "f"),
                            "limit": format(to_usd(limit), "f"), "ratio": round(ratio, 6), "state": state,
                            "threshold": crossed[-1] if crossed else None})
        stats = self.gateway.planner.stats.as_dict()
        canaries = [{"name": r.name, "model": r.model, "candidate": r.candidate, "state": r.state,
                     "stage": r.stage, "share": r.share} for r in getattr(self.gateway.canaries, "rows", [])]
        return {"thresholds": thresholds, "budgets": budgets, "breakers": stats["deployments"],
                "routes": stats["routes"], "breaker_skips": stats["breaker_skips"], "canaries": canaries,
                "proof": stats["proof"]}


def _query_for(request: Request) -> dict[str, str]:
    return query_params(request, ("by", "period", "since"))
