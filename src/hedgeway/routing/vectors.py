"""The request's MiniLM vector for routers that read it (`trained`): one embedding per request.

Between the cache and the plan (`Gateway.chat`): when the semantic cache embedded the request with
MiniLM, its vector is the router's (the same text: the last user turn; the cache's vector is never a
truncated one). Otherwise the router's own embedding is computed here on the embedder's worker thread —
the cache's MiniLM when it has one, else the process's shared MiniLM. Any failure returns None and the
route sends the request to its default tier: routing never fails a request.
"""

from __future__ import annotations

import logging
from typing import Any

from hedgeway.embedders import EMBEDDERS
from hedgeway.routing.labelled import embed_text

log = logging.getLogger("hedgeway.routing")


async def route_vector(cache: Any, req: Any, lookup: Any) -> Any:
    """The vector (float32, 384) for a request whose route reads one (`Planner.wants_embedding`), or None
    when computing it failed."""
    embedder = getattr(cache, "embedder", None)
    if embedder is None or embedder.name != "minilm":
        embedder = None
    vec = getattr(getattr(lookup, "handle", None), "vec", None)
    if vec is not None and embedder is not None:
        return vec
    try:
        model = embedder or EMBEDDERS["minilm"](None, None)
        return (await model.embed([embed_text(req.body.get("messages") or [])]))[0]
    except Exception:
        log.exception("routing embedding failed; the route's default tier serves this request")
        return None
