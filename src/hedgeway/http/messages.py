"""Anthropic's Messages API over the same pipeline: `POST /v1/messages` (and `/v1/messages/count_tokens`).

The official `anthropic` SDK works unchanged against it (`Anthropic(base_url="http://gateway:8080")`, key
in `x-api-key`), whatever the deployment behind the model name: the request is translated to OpenAI's
format (`hedgeway.ingress.anthropic`), run by `Gateway.chat` / `Gateway.chat_stream` exactly like
`/v1/chat/completions` (auth, limits, cache, routing, fallback, pricing), recorded in the ledger with
endpoint "messages", and the answer translated back. Every answer of these routes — errors included, a
wrong method included — is in Anthropic's format and carries `request-id` (= `x-hedgeway-request-id`).

`count_tokens` is an ESTIMATE (characters / 4 plus fixed per-message and per-image amounts): Hedgeway has no
tokenizer for every upstream. It is authenticated, free, and not recorded in the ledger.
"""

from __future__ import annotations

import logging
import os
from itertools import count
from typing import AsyncIterator

import orjson

from hedgeway.auth import bearer
from hedgeway.errors import (HedgewayError, InvalidRequest, MethodNotAllowed, NotFound, PermissionDenied,
                             UpstreamError)
from hedgeway.http.server import Request, Response, StreamingResponse
from hedgeway.ingress.anthropic import to_openai
from hedgeway.ingress.anthropic_reply import envelope, error_body, estimate_input_tokens, to_message
from hedgeway.ingress.anthropic_stream import StreamTranslator
from hedgeway.chat_request import model_named, parse_chat
from hedgeway.pipeline import Gateway

log = logging.getLogger("hedgeway.http")
ENDPOINT = "messages"
OTHER_METHODS = ("GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_PREFIX = os.urandom(4).hex()
_early_ids = count(1)  # ids for answers given before the request has a context (bad key, bad JSON)


def _body(request: Request) -> object:
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None


def _key(request: Request) -> str | None:
    return bearer(request.headers.get("authorization"), request.headers.get("x-api-key"))


def _early_id() -> str:
    return f"hw-{_PREFIX}-e{next(_early_ids):x}"


def rejection(status: int, message: str) -> bytes:
    """Anthropic's envelope for an error the HTTP server answers itself (a body over the limit: 413)."""
    return envelope(status, message, _early_id())


def _error(exc: HedgewayError, request_id: str | None = None) -> Response:
    request_id = request_id or _early_id()
    headers = {**exc.response_headers(), "request-id": request_id, "x-hedgeway-request-id": request_id}
    return Response(exc.status_code, error_body(exc, request_id), headers)


async def _translate(chunks: AsyncIterator[bytes], tr: StreamTranslator) -> AsyncIterator[bytes]:
    # message_start goes out with the first translated chunk, not before: the gateway's relay must have
    # started before anything can close this generator, or closing it would skip the relay's bookkeeping
    # (an async generator closed before its first step never runs its `finally`).
    head = tr.start()
    try:
        async for chunk in chunks:
            out = tr.feed(chunk)
            if head:
                out, head = head + out, b""
            if out:
                yield out
        tail = head + tr.finish()
        if tail:
            yield tail
    finally:
        await chunks.aclose()  # the gateway's relay writes its ledger record and frees the upstream now


class Messages:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    def methods(self, handler) -> dict:
        """Route-table entry: POST → `handler`; any other method → a 405 in Anthropic's format (the generic
        router would answer in OpenAI's envelope)."""
        return {"POST": handler, **{m: self.not_allowed for m in OTHER_METHODS}}

    async def not_allowed(self, request: Request) -> Response:
        return _error(MethodNotAllowed(f"{request.method} is not allowed on {request.path}; use POST",
                                       headers={"allow": "POST"}))

    async def create(self, request: Request) -> Response | StreamingResponse:
        try:
            ctx = self.gateway.begin(_key(request), request.headers.get("traceparent"))
        except HedgewayError as exc:
            return _error(exc)
        body = None
        try:
            body = _body(request)
            inbound = to_openai(body)
            req = parse_chat(inbound.body, request.headers.get("cache-control"))
        except HedgewayError as exc:  # recorded like any failure (as /v1/chat/completions does)
            self.gateway.failed(ctx, ENDPOINT, model_named(body), exc, False)
            return _error(exc, ctx.request_id)
        msg_id = f"msg_{ctx.request_id}"
        try:
            if req.stream:
                out = await self.gateway.chat_stream(req, ctx, ENDPOINT)
                return StreamingResponse({**out.headers, "request-id": ctx.request_id},
                                         _translate(out.chunks, StreamTranslator(inbound, msg_id)))
            reply = await self.gateway.chat(req, ctx, ENDPOINT)
        except HedgewayError as exc:
            self.gateway.failed(ctx, ENDPOINT, req.model, exc, req.stream)
            if exc.status_code >= 500:
                log.warning("request %s to %s failed: %s", ctx.request_id, req.model, exc.message)
            return _error(exc, ctx.request_id)
        try:
            body = to_message(reply.body, inbound, msg_id)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError):  # recorded as served; say so
            log.warning("request %s: upstream answer for %s not translatable", ctx.request_id, req.model)
            return _error(UpstreamError("the upstream's answer could not be translated"), ctx.request_id)
        return Response(200, body, {**reply.headers, "request-id": ctx.request_id})

    async def count_tokens(self, request: Request) -> Response:
        try:
            ctx = self.gateway.begin(_key(request))
        except HedgewayError as exc:
            return _error(exc)
        try:
            inbound = to_openai(_body(request), require_max_tokens=False)
            allowed = ctx.principal.models
            if allowed is not None and inbound.model not in allowed:  # as admission would refuse it
                raise PermissionDenied(f"This key is not allowed to use model '{inbound.model}'.")
            if inbound.model not in self.gateway.config.models:
                raise NotFound(f"The model `{inbound.model}` does not exist or you do not have access to it.")
        except HedgewayError as exc:
            return _error(exc, ctx.request_id)
        return Response(200, orjson.dumps({"input_tokens": estimate_input_tokens(inbound.body)}),
                        {"request-id": ctx.request_id, "x-hedgeway-request-id": ctx.request_id,
                         "x-hedgeway-estimate": "true"})
