"""POST /v1/feedback: the application's own label for one of its requests on a routed name.

    {"request_id": "hw-…", "score": 0.2}        the quality of the answer the user got, in [0, 1]
    {"request_id": "hw-…", "strong_wins": 1}    the application compared both tiers' answers: in [0, 1]

Authenticated like every /v1 call; a caller labels only its own requests (the same key): another key's
request id is a 404, exactly like an unknown one. The request must be on a routed name with two models.
A score is one-sided: on the cheap tier's answer it becomes strong_wins = 1 − score (the worse the cheap
answer, the more the strong tier was needed); on the strong tier's answer it says nothing about the cheap
one, so it is stored but is no training example. Sending feedback again for a request replaces it.
The label keeps the prompt's features (embedding, cues, n-grams) while the gateway still remembers the
request (the last 2048 non-streamed ones on routed names) or the ledger has its prompt (log_prompts).
"""

from __future__ import annotations

import asyncio
import math
import time

import orjson

from hedgeway.auth import bearer
from hedgeway.errors import InvalidRequest, NotFound
from hedgeway.http.server import Request, Response
from hedgeway.routing.label_store import Label

USER_ENDPOINTS = ("chat", "messages", "responses")


def _unit(body: dict, name: str) -> float:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= 1:
        raise InvalidRequest(f"'{name}' must be a number from 0 to 1", param=name)
    return float(value)


def parse(raw: bytes) -> tuple[str, str, float]:
    """(request_id, "score" | "strong_wins", value) of a feedback body; InvalidRequest (400) otherwise."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("We could not parse the JSON body of your request. The body must be valid JSON.",
                             code="invalid_json") from None
    if not isinstance(body, dict) or not isinstance(body.get("request_id"), str) or not body["request_id"]:
        raise InvalidRequest("'request_id' must be the x-hedgeway-request-id of one of your requests",
                             param="request_id")
    given = [k for k in ("score", "strong_wins") if k in body]
    if len(given) != 1 or set(body) - {"request_id", "score", "strong_wins"}:
        raise InvalidRequest("send 'request_id' and exactly one of 'score' or 'strong_wins'", param=None)
    return body["request_id"], given[0], _unit(body, given[0])


def feedback_handler(gateway):
    learner = gateway.learner

    async def feedback(request: Request) -> Response:
        h = request.headers
        key_id = gateway.auth.authenticate(bearer(h.get("authorization"), h.get("x-api-key"))).key_id  # 401
        rid, kind, value = parse(request.body)
        missing = NotFound(f"No request {rid[:100]!r} of yours is known.", param="request_id",
                           code="request_not_found")
        seen = learner.recent(rid)
        if seen is not None:
            if seen.key_id != key_id:
                raise missing
            pair, served, body = seen.pair, seen.served, seen.body
        else:
            row = await asyncio.to_thread(lambda: learner.store().request(rid))
            if row is None or row["key_id"] != key_id or row["endpoint"] not in USER_ENDPOINTS:
                raise missing
            pair = learner.pairs.get(row["model_name"])
            served = pair.tier(learner.model_of.get(row["deployment"] or "", "")) if pair else None
            body = {"messages": orjson.loads(row["prompt"])} if row["prompt"] else None
        if pair is None:
            raise InvalidRequest(f"request {rid[:100]!r} was not made to a routed name with two models",
                                 param="request_id", code="not_routed")
        label = Label(pair.route, f"{rid}/feedback", time.time(), "feedback", rid, key_id, pair.strong, pair.weak,
                      served, verdict="preference" if kind == "strong_wins" else "score")
        if kind == "strong_wins":
            label.strong_wins = value
        elif served is not None:
            setattr(label, served, value)
            label.strong_wins = 1 - value if served == "weak" else None
        label.detail = orjson.dumps({kind: value}).decode()
        if body is not None:
            await learner.describe(label, body)
        await asyncio.to_thread(lambda: learner.store().put([label]))
        return Response(200, orjson.dumps({"object": "feedback", "request_id": rid, "route": pair.route,
                                           "served": served, "strong_wins": label.strong_wins,
                                           "features": body is not None}))
    return feedback
