"""What every OpenAI-format route shares: its JSON body parsed, and the OpenAI error envelope as a response."""

from __future__ import annotations

import orjson

from hedgeway.errors import HedgewayError, InvalidRequest
from hedgeway.http.server import Request, Response


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
