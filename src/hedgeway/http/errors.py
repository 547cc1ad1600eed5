"""What every OpenAI-format route shares: its JSON body parsed, the OpenAI error envelope as a response, and
the bookkeeping of a request the pipeline failed."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from hedgeway.errors import HedgewayError, InvalidRequest
from hedgeway.http.server import Request, Response

log = logging.getLogger("hedgeway.http")


def json_body(request: Request) -> object:
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request. The body must be valid JSON.",
                             code="invalid_json") from None


def error_response(exc: HedgewayError, request_id: str | None = None) -> Response:
    headers = dict(exc.headers)
    if request_id:
        headers["x-hedgeway-request-id"] = request_id
    return Response(exc.status_code, exc.to_body(), headers)


def pipeline_failed(gateway: Any, ctx: Any, endpoint: str, model: str, exc: HedgewayError, stream: bool) -> Response:
    """The pipeline failed this request: its one ledger record, a log line for a 5xx, the error response."""
    gateway.failed(ctx, endpoint, model, exc, stream)
    if exc.status_code >= 500:
        log.warning("request %s to %s failed: %s", ctx.request_id, model, exc.message)
    return error_response(exc, ctx.request_id)
