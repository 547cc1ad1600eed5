"""The admin API under /admin/ (master key only): keys, users, teams and spend.

    POST   /admin/keys                  create; the response carries the secret `key`, the only time it is shown
    GET    /admin/keys[?user=&team=]    list (no secrets)
    GET | PATCH | DELETE  /admin/keys/{id}            DELETE revokes (the row stays, for the ledger)
    POST   /admin/keys/{id}/rotate      a new secret for the same key; the old one stops working
    POST | GET  /admin/teams  ·  GET | PATCH | DELETE /admin/teams/{id}     (same for /admin/users)
    GET    /admin/spend?by=key|team|user|model&period=day|week|month|total&since=7d|2024-05-01

Errors use the OpenAI envelope: 401 without a valid key, 403 (permission_error) for any key but the
master key, 400 naming the bad field, 404 for an unknown id or path. Database work runs in a thread,
never on the event loop; a write answers once the local key ring has reloaded (other replicas poll).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, unquote

import orjson

from hedgeway.auth import MASTER, bearer
from hedgeway.errors import InvalidRequest, MethodNotAllowed, NotFound, PermissionDenied
from hedgeway.http.server import Request, Response
from hedgeway.keys import schema, views

log = logging.getLogger("hedgeway.admin")
PREFIX = "/admin/"
ID = "{id}"
OWNERS = {"users": "users", "teams": "teams"}


def _json(body: Any, status: int = 200) -> Response:
    return Response(status, orjson.dumps(body))


def _body(request: Request) -> Any:
    try:
        return orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request. The body must be valid JSON.",
                             code="invalid_json") from None


def query_params(request: Request, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query string as a dict; InvalidRequest naming any parameter not in `allowed`."""
    params = dict(parse_qsl(request.query, keep_blank_values=True))
    for name in params:
        if name not in allowed:
            raise InvalidRequest(f"unknown query parameter {name[:50]!r}; allowed: {', '.join(allowed)}",
                                 param=name[:50])
    return params


class Admin:
    def __init__(self, gateway: Any):
        self.gateway = gateway
        self.ring = gateway.auth.ring
        # path shape -> method -> handler(request, *ids)
        self.table: dict[tuple[str, ...], dict[str, Callable[..., Awaitable[Response]]]] = {
            ("keys",): {"GET": self.list_keys, "POST": self.create_key},
            ("keys", ID): {"GET": self.get_key, "PATCH": self.update_key, "DELETE": self.revoke_key},
            ("keys", ID, "rotate"): {"POST": self.rotate_key},
            ("spend",): {"GET": self.spend},
        }
        for kind in OWNERS:
            self.table[(kind,)] = {"GET": self._owners(kind, "list"), "POST": self._owners(kind, "create")}
            self.table[(kind, ID)] = {"GET": self._owners(kind, "get"), "PATCH": self._owners(kind, "update"),
                                      "DELETE": self._owners(kind, "delete")}

    async def __call__(self, request: Request) -> Response:
        h = request.headers
        if self.gateway.auth.authenticate(bearer(h.get("authorization"), h.get("x-api-key"))) is not MASTER:
            raise PermissionDenied("The admin API needs the master key.", code="admin_only")
        parts = request.path[len(PREFIX):].rstrip("/").split("/")
        ids = [unquote(p) for p in parts[1:2]]
        shape = tuple(ID if i == 1 else p for i, p in enumerate(parts))
        methods = self.table.get(shape)
        if methods is None or any(not p for p in parts):
            raise NotFound(f"Unknown path {request.path[:200]}", code="unknown_url")
        handler = methods.get(request.method)
        if handler is None:
            raise MethodNotAllowed(f"{request.method} is not allowed on {request.path[:200]}",
                                   headers={"allow": ", ".join(methods)})
        if self.ring is None and shape[0] != "spend":
            raise InvalidRequest("virtual keys need authentication enabled (auth.master_key)")
        return await handler(request, *ids)

    async def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        def go() -> Any:
            result = fn(*args)
            try:
                self.ring.reload()  # this replica answers only once it sees its own change; others poll
            except Exception:  # the write is committed (a new secret must still reach the caller)
                self.ring.refresh_soon()
            return result
        return await asyncio.to_thread(go)

    # --- keys ---
    async def create_key(self, request: Request) -> Response:
        spec = schema.parse(schema.KeyCreate, _body(request))
        row, secret = await self._write(self.ring.store.create_key, spec)
        log.info("admin: created key %s (%s…)", row["id"], row["prefix"])  # the audit trail: ids, never secrets
        return _json({**views.key_view(row), "key": secret}, 201)

    async def list_keys(self, request: Request) -> Response:
        q = query_params(request, ("user", "team"))
        rows = await asyncio.to_thread(self.ring.store.list_keys, q.get("user"), q.get("team"))
        return _json({"object": "list", "data": [views.key_view(r) for r in rows]})

    async def get_key(self, request: Request, key_id: str) -> Response:
        return _json(views.key_view(await asyncio.to_thread(self.ring.store.get_key, key_id)))

    async def update_key(self, request: Request, key_id: str) -> Response:
        spec = schema.parse(schema.KeyUpdate, _body(request))
        return _json(views.key_view(await self._write(self.ring.store.update_key, key_id, spec)))

    async def revoke_key(self, request: Request, key_id: str) -> Response:
        row = await self._write(self.ring.store.revoke_key, key_id)
        log.info("admin: revoked key %s", row["id"])
        return _json(views.key_view(row))

    async def rotate_key(self, request: Request, key_id: str) -> Response:
        row, secret = await self._write(self.ring.store.rotate_key, key_id)
        log.info("admin: rotated key %s (now %s…)", row["id"], row["prefix"])
        return _json({**views.key_view(row), "key": secret})

    # --- users and teams ---
    def _owners(self, kind: str, action: str) -> Callable[..., Awaitable[Response]]:
        store = self.ring.store if self.ring is not None else None

        async def create(request: Request) -> Response:
            spec = schema.parse(schema.OwnerCreate, _body(request))
            return _json(views.owner_view(kind, await self._write(store.create_owner, kind, spec)), 201)

        async def list_(request: Request) -> Response:
            rows = await asyncio.to_thread(store.list_owners, kind)
            return _json({"object": "list", "data": [views.owner_view(kind, r) for r in rows]})

        async def get(request: Request, owner_id: str) -> Response:
            return _json(views.owner_view(kind, await asyncio.to_thread(store.get_owner, kind, owner_id)))

        async def update(request: Request, owner_id: str) -> Response:
            spec = schema.parse(schema.OwnerUpdate, _body(request))
            return _json(views.owner_view(kind, await self._write(store.update_owner, kind, owner_id, spec)))

        async def delete(request: Request, owner_id: str) -> Response:
            await self._write(store.delete_owner, kind, owner_id)
            return _json({"object": kind[:-1], "id": owner_id, "deleted": True})

        return {"create": create, "list": list_, "get": get, "update": update, "delete": delete}[action]

    # --- spend ---
    async def spend(self, request: Request) -> Response:
        q = query_params(request, ("by", "period", "since"))
        by = [b for b in q.get("by", "model").split(",") if b]
        period = q.get("period", "total")
        try:
            since = views.since_epoch(q["since"]) if q.get("since") else None
            if any(b not in views.BY for b in by):
                raise ValueError(f"by must be a comma list of {', '.join(views.BY)}")
            if period not in views.PERIODS:
                raise ValueError(f"period must be one of {', '.join(views.PERIODS)}")
        except ValueError as exc:
            raise InvalidRequest(str(exc), code="invalid_value") from None
        rows = await asyncio.to_thread(self._spend_rows, by, period, since)
        data = [{**r, "cost": format(r["cost"], "f")} for r in rows]
        return _json({"object": "list", "by": by, "period": period, "data": data})

    def _spend_rows(self, by: list[str], period: str, since: float | None) -> list[dict[str, Any]]:
        users = None
        if "user" in by:
            users = {r["id"]: r["user_id"] for r in self.ring.store.list_keys()} if self.ring else {}
        return views.spend(self.gateway.ledger.store, by, period, since, users)
