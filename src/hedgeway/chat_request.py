"""Validation of inbound OpenAI chat request bodies: what the gateway relies on is checked (a clear 400
naming the field), everything else passes through untouched.

    req = parse_chat(body, cache_control_header)   # ChatRequest, or InvalidRequest
"""

from __future__ import annotations

from typing import Any

from hedgeway.errors import InvalidRequest
from hedgeway.types import ChatRequest

# Sampling parameters every OpenAI-compatible upstream types the same way, checked here so a wrong type or an
# absurd value is a clear 400 from the gateway whatever the deployment (http/openapi.py documents them).
INT_PARAMS = {"n": (1, 128), "max_tokens": (1, 2**31 - 1), "max_completion_tokens": (1, 2**31 - 1),
              "top_logprobs": (0, 20)}
NUMBER_PARAMS = {"temperature": (0, 2), "top_p": (0, 1), "presence_penalty": (-2, 2), "frequency_penalty": (-2, 2)}


_RULES = {**{k: ((int,), "an integer", lo, hi) for k, (lo, hi) in INT_PARAMS.items()},
          **{k: ((int, float), "a number", lo, hi) for k, (lo, hi) in NUMBER_PARAMS.items()}}


def _check_params(body: dict[str, Any]) -> None:
    for name, v in body.items():  # a few keys: cheaper than looking up every rule
        rule = _RULES.get(name)
        if rule is not None and v is not None and (type(v) not in rule[0] or not rule[2] <= v <= rule[3]):
            raise InvalidRequest(f"'{name}' must be {rule[1]} from {rule[2]} to {rule[3]}", param=name,
                                 code="invalid_value")
    for m in body["messages"]:
        if type(m) is not dict or type(m.get("role")) is not str:
            raise InvalidRequest("each message must be an object with a string 'role'", param="messages",
                                 code="invalid_type")


def model_named(body: Any) -> str:
    """The `model` a request body names, or "": what the ledger records for a request refused as malformed."""
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) else ""


def parse_chat(body: Any, cache_control: str | None = None) -> ChatRequest:
    """Validate the parts of an OpenAI chat request the gateway relies on; the rest passes through.
    Hedgeway's own `cache` field (per-request cache control) is taken out of the body, and a
    `Cache-Control: no-cache | no-store` request header is folded into it."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model", code="missing_required_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is a required property and must be a non-empty array",
                             param="messages", code="missing_required_parameter" if messages is None else "invalid_type")
    _check_params(body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream", code="invalid_type")
    opts = body.get("stream_options")
    include_usage = bool(opts.get("include_usage")) if isinstance(opts, dict) else False
    cache = body.pop("cache", None)
    if cache is not None and not isinstance(cache, dict):
        raise InvalidRequest("'cache' must be an object, e.g. {\"no_cache\": true} or {\"ttl\": 60}",
                             param="cache", code="invalid_type")
    if cache_control:
        directives = {d.strip().lower() for d in cache_control.split(",")}
        cache = dict(cache or ())
        if "no-store" in directives:
            cache["no_store"] = True
        if "no-cache" in directives:
            cache["no_cache"] = True
    return ChatRequest(model=model, body=body, stream=stream, include_usage=include_usage, cache=cache)
