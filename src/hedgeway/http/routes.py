"""The OpenAI-compatible HTTP surface: a route table (path → method → handler) over a `Gateway`.

Handlers are thin: parse inbound JSON, call the pipeline, render its reply. Every `HedgewayError` becomes
the OpenAI error envelope with its status and the request id; nothing else about a failure leaves here.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable
from urllib.parse import unquote

import orjson

from hedgeway.auth import bearer
from hedgeway.errors import HedgewayError, InvalidRequest, MethodNotAllowed, NotFound
from hedgeway.http.admin import PREFIX as ADMIN_PREFIX, Admin
from hedgeway.http.feedback import feedback_handler
from hedgeway.http.errors import error_response, json_body as _json, pipeline_failed
from hedgeway.http.messages import Messages, rejection as messages_rejection
from hedgeway.http.responses import PREFIX as RESPONSES_PREFIX, Responses
from hedgeway.http import openapi
from hedgeway.http.router_stats import router_stats_handler
from hedgeway.http.ui import UI
from hedgeway.http.server import Request, Response, StreamingResponse, openai_error_body
from hedgeway.chat_request import model_named, parse_chat
from hedgeway.context import RequestContext
from hedgeway.pipeline import Gateway

log = logging.getLogger("hedgeway.http")
Handler = Callable[[Request], Awaitable["Response | StreamingResponse"]]


def _key(request: Request) -> str | None:
    h = request.headers
    return bearer(h.get("authorization"), h.get("x-api-key"))


MODEL_PREFIXES = ("/v1/models/", "/models/")


def _model(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "hedgeway"}


class Routes:
    def __init__(self, gateway: Gateway):
        self.gateway = gateway
        self.admin = Admin(gateway)  # everything under /admin/ (master key only)
        self.ui = UI(gateway)  # the dashboard: /ui and /ui/api/* (master or admin key)
        messages = Messages(gateway)
        self.responses = Responses(gateway)  # OpenAI's Responses API and its store
        self.table: dict[str, dict[str, Handler]] = {
            "/v1/chat/completions": {"POST": self.chat},
            "/chat/completions": {"POST": self.chat},
            "/v1/embeddings": {"POST": self.embeddings},
            "/embeddings": {"POST": self.embeddings},
            "/v1/models": {"GET": self.models},
            "/models": {"GET": self.models},
            "/healthz": {"GET": self.healthz},
            "/readyz": {"GET": self.readyz},
            "/metrics": {"GET": self.metrics},
            "/v1/router/stats": {"GET": router_stats_handler(gateway)},
            "/v1/feedback": {"POST": feedback_handler(gateway)},  # labels from the application
            "/openapi.json": {"GET": openapi.serve},
            "/v1/messages": messages.methods(messages.create),  # Anthropic's Messages API
            "/v1/messages/count_tokens": messages.methods(messages.count_tokens),
            "/v1/responses": {"POST": self.responses.create},
        }

    def rejection(self, status: int, message: str, path: str) -> bytes:
        """The body of an error the server answers before any handler runs (413 over the body limit, 431,
        malformed HTTP): Anthropic's envelope on the Messages routes, OpenAI's everywhere else."""
        if path.startswith("/v1/messages"):
            return messages_rejection(status, message)
        return openai_error_body(status, message, path)

    async def __call__(self, request: Request) -> Response | StreamingResponse:
        methods = self.table.get(request.path)
        try:
            if methods is None:
                if request.path.startswith(ADMIN_PREFIX):
                    return await self.admin(request)
                if self.ui.handles(request.path):
                    return await self.ui(request)
                if request.path.startswith(MODEL_PREFIXES) and request.method == "GET":
                    return await self.model(request)
                if request.path.startswith(RESPONSES_PREFIX):
                    return await self.responses.by_id(request)
                raise NotFound(f"Unknown path {request.path[:200]}", code="unknown_url")
            handler = methods.get(request.method)
            if handler is None:
                raise MethodNotAllowed(f"{request.method} is not allowed on {request.path}",
                                       headers={"allow": ", ".join(methods)})
            return await handler(request)
        except HedgewayError as exc:
            return error_response(exc)

    def _rejected(self, ctx: RequestContext, endpoint: str, body: object, exc: HedgewayError) -> Response:
        """An authenticated request refused before the pipeline (bad JSON, a bad field): recorded all the
        same, with its status and error type, under the model it named (if any)."""
        self.gateway.failed(ctx, endpoint, model_named(body), exc, False)
        return error_response(exc, ctx.request_id)

    async def _run(self, ctx: RequestContext, endpoint: str, model: str, stream: bool, call) -> Response | StreamingResponse:
        try:
            return await call()
        except HedgewayError as exc:
            return pipeline_failed(self.gateway, ctx, endpoint, model, exc, stream)

    async def chat(self, request: Request) -> Response | StreamingResponse:
        ctx = self.gateway.begin(_key(request), request.headers.get("traceparent"))
        body = None
        try:
            body = _json(request)
            req = parse_chat(body, request.headers.get("cache-control"))
        except HedgewayError as exc:
            return self._rejected(ctx, "chat", body, exc)

        async def call():
            if req.stream:
                out = await self.gateway.chat_stream(req, ctx)
                return StreamingResponse(out.headers, out.chunks)
            reply = await self.gateway.chat(req, ctx)
            return Response(200, reply.body, reply.headers)

        return await self._run(ctx, "chat", req.model, req.stream, call)

    async def embeddings(self, request: Request) -> Response:
        ctx = self.gateway.begin(_key(request), request.headers.get("traceparent"))
        body = None
        try:
            body = _json(request)
            if not isinstance(body, dict) or not isinstance(body.get("model"), str):
                raise InvalidRequest("you must provide a model parameter", param="model")
            if not isinstance(body.get("input"), (str, list)) or not body["input"]:
                raise InvalidRequest("'input' must be a non-empty string or array", param="input")
        except HedgewayError as exc:
            return self._rejected(ctx, "embeddings", body, exc)
        model = body["model"]

        async def call():
            reply = await self.gateway.embeddings(model, body, ctx)
            return Response(200, reply.body, reply.headers)

        return await self._run(ctx, "embeddings", model, False, call)

    def _visible(self, request: Request) -> list[str]:
        allowed = self.gateway.begin(_key(request)).principal.models  # None: every model
        return [name for name in self.gateway.model_names() if allowed is None or name in allowed]

    async def models(self, request: Request) -> Response:
        data = [_model(name) for name in self._visible(request)]
        return Response(200, orjson.dumps({"object": "list", "data": data}))

    async def model(self, request: Request) -> Response:
        """`GET /v1/models/{id}` (the SDK's `models.retrieve`): a model this key may use, else 404."""
        name = unquote(request.path.split("/models/", 1)[1])
        if name not in self._visible(request):
            raise NotFound(f"The model '{name[:200]}' does not exist or you do not have access to it.",
                           param="model", code="model_not_found")
        return Response(200, orjson.dumps(_model(name)))

    def close(self) -> None:
        self.responses.close()

    async def healthz(self, request: Request) -> Response:
        return Response(200, b'{"status":"ok"}')

    async def readyz(self, request: Request) -> Response:
        ok = self.gateway.ready()
        return Response(200 if ok else 503, orjson.dumps({"status": "ready" if ok else "not ready",
                                                          "ledger": ok}))

    async def metrics(self, request: Request) -> Response:
        return Response(200, self.gateway.metrics.render(), content_type="text/plain; version=0.0.4")
