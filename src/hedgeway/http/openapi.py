"""The OpenAPI 3.1 document of Hedgeway's own HTTP API, served at `GET /openapi.json` (no key needed).

Built once at import and served as fixed bytes. The chat request's checked parameters come from the same
tables `chat_request.parse_chat` enforces, so the document and the validation cannot drift apart. Fields the
document does not list pass through to the upstream unchanged (tools, response_format, vendor extras):
request schemas say `additionalProperties: true` on purpose. The Anthropic Messages routes and the admin
API are listed by path; their bodies follow Anthropic's API and the admin section of the README. The Responses
API's request lists every field `ingress.responses` accepts (others are 400s naming them).
"""

from __future__ import annotations

from typing import Any

import orjson

from hedgeway import __version__
from hedgeway.http.server import Request, Response
from hedgeway.chat_request import INT_PARAMS, NUMBER_PARAMS

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


ERRORS = {
    "400": _error("Malformed JSON, a missing or mistyped field, or a parameter out of range"),
    "401": _error("Missing or wrong API key"),
    "404": _error("Unknown model (`model_not_found`) or path"),
    "405": _error("Wrong method"),
    "408": _error("Request head or body not received within `server.head_timeout` / `body_timeout`"),
    "413": _error("Body larger than `server.max_body_bytes`"),
    "429": _error("Rate limited or over budget (by Hedgeway, or by every upstream)"),
    "431": _error("Request headers too large"),
    "502": _error("Every deployment failed (`all_deployments_failed`, each attempt listed)"),
    "503": _error("Over `server.max_connections` open connections (Retry-After: 1)"),
    "504": _error("Every attempt timed out"),
}

_CHAT_PROPS: dict[str, Any] = {
    "model": {"type": "string", "minLength": 1, "description": "a model name of the config"},
    "messages": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["role"], "additionalProperties": True,
        "properties": {"role": {"type": "string"}, "content": {}}}},
    "stream": {"type": "boolean", "default": False},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "cache": {"type": "object", "description": "Hedgeway's per-request cache control, e.g. {\"no_cache\": true}; "
                                               "never sent upstream"},
    **{name: {"type": "integer", "minimum": lo, "maximum": hi} for name, (lo, hi) in INT_PARAMS.items()},
    **{name: {"type": "number", "minimum": lo, "maximum": hi} for name, (lo, hi) in NUMBER_PARAMS.items()},
}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
    "ChatCompletionRequest": {"type": "object", "required": ["model", "messages"], "properties": _CHAT_PROPS,
                              "additionalProperties": True},
    "ChatCompletion": {"type": "object", "required": ["object", "choices"], "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "model": {"type": "string"},
        "choices": {"type": "array"}, "usage": {"type": "object"}}},
    "EmbeddingsRequest": {"type": "object", "required": ["model", "input"], "additionalProperties": True,
                          "properties": {"model": {"type": "string", "minLength": 1},
                                         "input": {"anyOf": [{"type": "string", "minLength": 1},
                                                             {"type": "array", "minItems": 1}]}}},
    "EmbeddingsList": {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array"}, "usage": {"type": "object"}}},
    "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": {
            "type": "object", "required": ["id", "object"],
            "properties": {"id": {"type": "string"}, "object": {"const": "model"}}}}}},
    "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
    "FeedbackRequest": {"type": "object", "required": ["request_id"], "additionalProperties": False,
                        "properties": {"request_id": {"type": "string", "minLength": 1},
                                       "score": {"type": "number", "minimum": 0, "maximum": 1},
                                       "strong_wins": {"type": "number", "minimum": 0, "maximum": 1}},
                        "oneOf": [{"required": ["score"]}, {"required": ["strong_wins"]}]},
    "ResponsesRequest": {"type": "object", "required": ["model", "input"], "additionalProperties": False,
                         "properties": {
        "model": {"type": "string", "minLength": 1},
        "input": {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "object"}}],
                  "description": "messages (input_text / input_image / input_file parts), function_call, "
                                 "function_call_output items"},
        "instructions": {"type": "string", "description": "the upstream's system prompt"},
        "previous_response_id": {"type": "string"}, "store": {"type": "boolean", "default": True},
        "stream": {"type": "boolean", "default": False}, "stream_options": {"type": "object"},
        "max_output_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "tools": {"type": "array", "items": {"type": "object", "required": ["type", "name"],
                                             "properties": {"type": {"const": "function"}}}},
        "tool_choice": {}, "parallel_tool_calls": {"type": "boolean"}, "text": {"type": "object"},
        "reasoning": {"type": "object", "properties": {"effort": {"type": "string"}}},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "user": {"type": "string"}, "service_tier": {"type": "string"}, "safety_identifier": {"type": "string"},
        "prompt_cache_key": {"type": "string"}, "background": {"const": False}, "include": {"maxItems": 0},
        "truncation": {"const": "disabled"}, "cache": _CHAT_PROPS["cache"]}},
    "Response": {"type": "object", "required": ["id", "object", "status", "output"], "properties": {
        "id": {"type": "string"}, "object": {"const": "response"}, "status": {"type": "string"},
        "output": {"type": "array"}, "usage": {"type": ["object", "null"]}}},
    "ResponseItemList": {"type": "object", "required": ["object", "data", "has_more"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array"}, "first_id": {"type": ["string", "null"]},
        "last_id": {"type": ["string", "null"]}, "has_more": {"type": "boolean"}}},
}

_HEADERS = {name: {"schema": {"type": "string"}, "description": text} for name, text in {
    "x-hedgeway-request-id": "the request's id (also the ledger's)",
    "x-hedgeway-deployment": "the deployment that answered",
    "x-hedgeway-overhead-ms": "time spent in the gateway itself"}.items()}


def _post(summary: str, request: str, ok: dict[str, Any]) -> dict[str, Any]:
    return {"post": {"summary": summary, "security": [{"bearer": []}],
                     "requestBody": {"required": True, "content": {JSON: {"schema": _ref(request)}}},
                     "responses": {"200": ok, **ERRORS}}}


def _get(summary: str, ok: dict[str, Any], secured: bool = False, extra: dict | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **(extra or {})}}
    op["security"] = [{"bearer": []}] if secured else []
    return {"get": op}


_ID = {"name": "response_id", "in": "path", "required": True, "schema": {"type": "string"}}

PATHS: dict[str, Any] = {
    "/v1/chat/completions": _post("Chat completion (also at /chat/completions); SSE when stream is true",
                                  "ChatCompletionRequest", {
        "description": "A chat.completion, or with stream=true chat.completion.chunk events ending with "
                       "`data: [DONE]` (a stream broken after it started ends with an error event)",
        "headers": _HEADERS,
        "content": {JSON: {"schema": _ref("ChatCompletion")}, "text/event-stream": {"schema": {"type": "string"}}}}),
    "/v1/embeddings": _post("Embeddings (also at /embeddings)", "EmbeddingsRequest", {
        "description": "An embeddings list", "headers": _HEADERS,
        "content": {JSON: {"schema": _ref("EmbeddingsList")}}}),
    "/v1/models": _get("The model names of the config (also at /models)", {
        "description": "Model list", "content": {JSON: {"schema": _ref("ModelList")}}}, secured=True,
        extra={"401": ERRORS["401"]}),
    "/v1/messages": {"post": {"summary": "Anthropic Messages API over the same pipeline (Anthropic formats)",
                              "security": [{"bearer": []}], "responses": {"200": {"description": "A message"}}}},
    "/v1/messages/count_tokens": {"post": {"summary": "Estimated input tokens (Anthropic format)",
                                           "security": [{"bearer": []}],
                                           "responses": {"200": {"description": "Token estimate"}}}},
    "/v1/feedback": _post("The application's label for one of its own requests on a routed name",
                          "FeedbackRequest", {"description": "Stored",
                                              "content": {JSON: {"schema": {"type": "object"}}}}),
    "/v1/responses": _post("OpenAI Responses API over the same pipeline; SSE events when stream is true",
                           "ResponsesRequest", {
        "description": "A Response, or with stream=true its typed events (response.created … response.completed)",
        "headers": _HEADERS,
        "content": {JSON: {"schema": _ref("Response")}, "text/event-stream": {"schema": {"type": "string"}}}}),
    "/v1/responses/{response_id}": {
        "parameters": [_ID],
        **_get("A stored response (this key's team, else this key)", {
            "description": "The Response", "content": {JSON: {"schema": _ref("Response")}}}, secured=True,
            extra={"404": _error("Unknown, expired, deleted or another tenant's id")}),
        "delete": {"summary": "Delete a stored response", "security": [{"bearer": []}],
                   "responses": {"200": {"description": "Deleted"}, "404": _error("Unknown id")}}},
    "/v1/responses/{response_id}/input_items": {
        "parameters": [_ID, *({"name": n, "in": "query", "schema": s} for n, s in (
            ("limit", {"type": "integer", "minimum": 1, "maximum": 100}), ("order", {"enum": ["asc", "desc"]}),
            ("after", {"type": "string"})))],
        **_get("The items the response was generated from (its conversation, then its input)", {
            "description": "A list of items", "content": {JSON: {"schema": _ref("ResponseItemList")}}},
            secured=True, extra={"404": _error("Unknown id")})},
    "/healthz": _get("Liveness", {"description": "Serving", "content": {JSON: {"schema": _ref("Status")}}}),
    "/readyz": _get("Readiness: 503 while ledger records are neither written nor safely spooled", {
        "description": "Ready", "content": {JSON: {"schema": _ref("Status")}}},
        extra={"503": {"description": "Not ready", "content": {JSON: {"schema": _ref("Status")}}}}),
    "/metrics": _get("Prometheus metrics", {"description": "Text format 0.0.4",
                                            "content": {"text/plain": {"schema": {"type": "string"}}}}),
    "/openapi.json": _get("This document", {"description": "OpenAPI 3.1",
                                            "content": {JSON: {"schema": {"type": "object"}}}}),
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Hedgeway", "version": __version__,
             "description": "OpenAI-compatible LLM gateway. Every error is OpenAI's envelope "
                            "{\"error\": {message, type, param, code}} (Anthropic's on /v1/messages)."},
    "paths": PATHS,
    "components": {"schemas": SCHEMAS, "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key> "
                                                                      "(or x-api-key: <key>)"}}},
}

BODY = orjson.dumps(DOCUMENT)


async def serve(request: Request) -> Response:
    """`GET /openapi.json`: the document, unauthenticated (it holds no config and no secrets)."""
    return Response(200, BODY)
