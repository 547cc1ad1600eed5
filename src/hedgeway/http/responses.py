"""OpenAI's Responses API over the same pipeline.

    POST   /v1/responses                    create; SSE events when `stream` is true
    GET    /v1/responses/{id}               a stored response
    DELETE /v1/responses/{id}
    GET    /v1/responses/{id}/input_items   ?limit=1..100 (20) &order=asc|desc (desc) &after=<item id>

The official `openai` SDK's `client.responses` works unchanged, whatever the deployment behind the model
name: the request is translated to a chat request (`hedgeway.ingress.responses`), run by `Gateway.chat` /
`Gateway.chat_stream` exactly like `/v1/chat/completions` (auth, limits, budgets, cache, routing, fallback,
pricing), recorded in the ledger with endpoint "responses", and the answer translated back. Errors are
OpenAI's envelope; an unknown `previous_response_id` is OpenAI's 400 `previous_response_not_found`.

With `store` (the default), the response and its input are queued for the response store
(`hedgeway.ledger.responses`) as the answer (or the stream's last event) leaves; this replica reads them at
once, and another one looks again for up to 0.2 s for an id it does not find, so the next turn may reach
any replica. Ids are
scoped to the tenant (the key's team, else the key): another tenant's id is a 404, as an unknown one.
Failed responses are not stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, AsyncIterator

import orjson

from hedgeway.auth import bearer
from hedgeway.cache.keys import tenant
from hedgeway.chat_request import parse_chat
from hedgeway.errors import HedgewayError, InvalidRequest, MethodNotAllowed, NotFound, UpstreamError
from hedgeway.http.admin import query_params
from hedgeway.http.errors import error_response, json_body, pipeline_failed
from hedgeway.http.server import Request, Response, StreamingResponse
from hedgeway.ingress.responses import Inbound, chat_body, parse
from hedgeway.ingress.responses_items import new_id
from hedgeway.ingress.responses_reply import to_response
from hedgeway.ingress.responses_stream import StreamTranslator
from hedgeway.ledger.responses import ResponseStore, Turn
from hedgeway.pipeline import Gateway, RequestContext

log = logging.getLogger("hedgeway.http")
ENDPOINT = "responses"
PREFIX = "/v1/responses/"
RECHECK = (0.05, 0.15)  # pauses before reading a missing id again (another replica's commit may be on its way)


def _context(turns: list[Turn]) -> list[dict[str, Any]]:
    """The items a conversation holds: each turn's input, then its output."""
    return [item for t in turns for item in (*t.input, *t.response["output"])]


def _missing(response_id: str) -> NotFound:
    return NotFound(f"No response found with id '{response_id[:100]}'.", param="response_id")


class Responses:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.settings = gateway.config.responses
        self.store = ResponseStore(gateway.config.ledger.url, self.settings)

    def _begin(self, request: Request) -> RequestContext:
        h = request.headers
        return self.gateway.begin(bearer(h.get("authorization"), h.get("x-api-key")), h.get("traceparent"))

    async def create(self, request: Request) -> Response | StreamingResponse:
        ctx = self._begin(request)
        inb = parse(json_body(request), self.settings.store)
        if not self.settings.store and (inb.store or inb.previous_id):
            name = "store" if inb.store else "previous_response_id"
            raise InvalidRequest(f"Invalid '{name}': this gateway keeps no responses (responses.store is false).",
                                 param=name, code="unsupported_parameter")
        turns: list[Turn] = []
        if inb.previous_id:
            turns = await self._find(self.store.chain, tenant(ctx.principal), inb.previous_id)
            if turns is None:
                raise InvalidRequest(f"Previous response with id '{inb.previous_id[:100]}' not found.",
                                     param="previous_response_id", code="previous_response_not_found")
        req = parse_chat(chat_body(inb, _context(turns)), request.headers.get("cache-control"))
        resp_id, created = new_id("resp"), int(time.time())
        try:
            if req.stream:
                out = await self.gateway.chat_stream(req, ctx, ENDPOINT)
                tr = StreamTranslator(inb, resp_id, created)
                return StreamingResponse(out.headers, self._relay(out.chunks, tr, ctx, turns))
            reply = await self.gateway.chat(req, ctx, ENDPOINT)
        except HedgewayError as exc:
            return pipeline_failed(self.gateway, ctx, ENDPOINT, req.model, exc, req.stream)
        try:
            body = to_response(reply.body, inb, resp_id, created)
        except (ValueError, TypeError, AttributeError, KeyError):  # recorded as served; say so
            log.warning("request %s: upstream answer for %s not translatable", ctx.request_id, req.model)
            return error_response(UpstreamError("the upstream's answer could not be translated"), ctx.request_id)
        headers = reply.headers
        if inb.store and not self._save(ctx, inb, body, turns):
            headers = {**headers, "x-hedgeway-stored": "false"}
        return Response(200, orjson.dumps(body), headers)

    def _save(self, ctx: RequestContext, inb: Inbound, body: dict[str, Any], turns: list[Turn]) -> bool:
        """Queue a response for the store (no I/O here); False (logged) when the store's queue is full."""
        if self.store.put(tenant(ctx.principal), body, inb.items, [t.id for t in turns]):
            return True
        log.error("request %s: response %s not stored (the store's queue is full)", ctx.request_id, body["id"])
        return False

    async def _find(self, read, who: str, response_id: str):
        """`read(who, response_id)` off the event loop; a miss is read again for up to RECHECK s, as a response
        another replica has just answered may not be committed yet (the store's writes are queued)."""
        for pause in (*RECHECK, None):
            found = await asyncio.to_thread(read, who, response_id)
            if found is not None or pause is None:
                return found
            await asyncio.sleep(pause)

    async def _relay(self, chunks: AsyncIterator[bytes], tr: StreamTranslator, ctx: RequestContext,
                     turns: list[Turn]) -> AsyncIterator[bytes]:
        # The head goes out with the first translated chunk (as /v1/messages does): the gateway's relay must
        # have started before anything can close this generator, or its bookkeeping would be skipped.
        head, saved = tr.start(), False
        try:
            async for chunk in chunks:
                out = head + tr.feed(chunk)
                head = b""
                if tr.final is not None and not saved:  # stored before the last event leaves
                    saved = self._save_final(ctx, tr, turns)
                if out:
                    yield out
            tail = head + tr.finish()
            if not saved:
                self._save_final(ctx, tr, turns)
            if tail:
                yield tail
        finally:
            await chunks.aclose()  # the gateway's relay writes its ledger record and frees the upstream now

    def _save_final(self, ctx: RequestContext, tr: StreamTranslator, turns: list[Turn]) -> bool:
        """Store a streamed response (not a failed one) when asked to; True: nothing more to do."""
        if tr.inb.store and tr.final["status"] != "failed":
            self._save(ctx, tr.inb, tr.final, turns)
        return True

    # --- stored responses ---
    async def by_id(self, request: Request) -> Response:
        """`/v1/responses/{id}` (GET, DELETE) and `/v1/responses/{id}/input_items` (GET)."""
        rest = request.path[len(PREFIX):]
        response_id, _, sub = rest.partition("/")
        if not response_id or sub not in ("", "input_items"):
            raise NotFound(f"Unknown path {request.path[:200]}", code="unknown_url")
        allowed = ("GET", "DELETE") if not sub else ("GET",)
        if request.method not in allowed:
            raise MethodNotAllowed(f"{request.method} is not allowed on {request.path[:200]}",
                                   headers={"allow": ", ".join(allowed)})
        ctx = self._begin(request)
        who = tenant(ctx.principal)
        if sub:
            return await self._input_items(request, who, response_id)
        if request.method == "DELETE":
            if not await self._find(lambda w, i: self.store.delete(w, i) or None, who, response_id):
                raise _missing(response_id)
            return Response(200, orjson.dumps({"id": response_id, "object": "response", "deleted": True}))
        params = query_params(request, ("include", "stream"))
        for name in params:
            if params[name] not in ("", "false"):
                raise InvalidRequest(f"Invalid '{name}': not supported by this gateway when retrieving a "
                                     "response.", param=name)
        found = await self._find(self.store.get, who, response_id)
        if found is None:
            raise _missing(response_id)
        return Response(200, orjson.dumps(found))

    async def _input_items(self, request: Request, who: str, response_id: str) -> Response:
        params = query_params(request, ("limit", "order", "after", "include"))
        limit = params.get("limit", "20")
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            raise InvalidRequest("Invalid 'limit': expected an integer from 1 to 100.", param="limit")
        order = params.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest("Invalid 'order': expected 'asc' or 'desc'.", param="order")
        if params.get("include"):
            raise InvalidRequest("Invalid 'include': this gateway cannot provide any include value.", param="include")
        turns = await self._find(self.store.chain, who, response_id)
        if turns is None:
            raise _missing(response_id)
        items = _context(turns[:-1]) + turns[-1].input  # what this response was generated from
        if order == "desc":
            items.reverse()
        after = params.get("after")
        if after:
            ids = [it["id"] for it in items]
            items = items[ids.index(after) + 1:] if after in ids else []
        page = items[:int(limit)]
        return Response(200, orjson.dumps({
            "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": len(items) > len(page)}))

    def close(self) -> None:
        self.store.close()
