"""The ledger's `route` column of one request: what decided where it went, as JSON."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Mapping

import orjson

from hedgeway.errors import UpstreamError


def route_json(decision: Mapping[str, Any] | None, failures: list[UpstreamError],
               hedged: tuple[str, Decimal] | None = None) -> str | None:
    """The router's decision, the fallbacks taken and the hedge that lost (cancelled before it reported
    usage; its prompt's cost, included in the record's cost), as JSON (None if none of them)."""
    if not failures and decision is None:
        return None
    route = dict(decision or ())
    if hedged:
        route["hedged"], route["hedged_cost"] = hedged[0], f"{hedged[1]:f}"
    if failures:
        route["fallbacks"] = [f"{f.deployment} ({type(f).__name__})" for f in failures]
        sla = [f.deployment for f in failures if f.code == "sla_deadline_missed"]
        if sla:
            route["sla_missed"] = sla
    return orjson.dumps(route).decode()
