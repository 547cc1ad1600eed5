"""What a client may send to create or change a key, user or team: strict models (unknown fields are
errors), shared by the admin API and the CLI. `parse(model, body)` turns a validation failure into an
`InvalidRequest` naming the field.

    budgets:  [{"limit": "100.00", "period": "monthly"}]      periods: daily | weekly | monthly | total
    limits:   {"rpm": 60, "tpm": 100000}                        either may be omitted
    models:   ["gpt-4o-mini", ...] or null (every model)
    expires_at: ISO 8601 (UTC unless it names an offset) or epoch seconds; null: never
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError

from hedgeway.errors import InvalidRequest
from hedgeway.strict import Strict

ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}")
Period = Literal["daily", "weekly", "monthly", "total"]


class BudgetIn(Strict):
    limit: Decimal = Field(gt=0, allow_inf_nan=False)
    period: Period = "monthly"


class LimitsIn(Strict):
    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)


def _models(value: list[str] | None) -> list[str] | None:
    if value is not None and (not value or not all(isinstance(m, str) and m for m in value)):
        raise ValueError("models must be a non-empty list of model names, or null for every model")
    return value


def _expiry(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("expires_at must be an ISO 8601 time or epoch seconds")
    if isinstance(value, (int, float)):
        return float(value)
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("expires_at must be an ISO 8601 time (e.g. 2025-01-31T00:00:00Z) or epoch seconds"
                         ) from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


Models = Annotated[list[str] | None, AfterValidator(_models)]
Expiry = Annotated[float | None, BeforeValidator(_expiry)]


class _Caps(Strict):
    """What keys, users and teams share: allowed models, budgets, rate limits, free-form metadata."""

    models: Models = None
    budgets: list[BudgetIn] = []
    limits: LimitsIn | None = None
    metadata: dict[str, Any] = {}


class OwnerCreate(_Caps):
    """A user or a team."""

    id: str = Field(pattern=f"^{ID.pattern}$")


class OwnerUpdate(Strict):
    models: Models = None
    budgets: list[BudgetIn] | None = None
    limits: LimitsIn | None = None
    metadata: dict[str, Any] | None = None


class KeyCreate(_Caps):
    name: str | None = Field(None, max_length=200)
    user: str | None = None
    team: str | None = None
    expires_at: Expiry = None


class KeyUpdate(OwnerUpdate):
    name: str | None = Field(None, max_length=200)
    user: str | None = None
    team: str | None = None
    expires_at: Expiry = None


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: Any) -> M:
    """`body` validated as `model`; InvalidRequest (400) naming the first bad field otherwise.
    For updates, `model_fields_set` tells which fields were sent (null clears a field)."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        from hedgeway.config import format_loc

        err = exc.errors()[0]
        path = format_loc(err["loc"])
        raise InvalidRequest(f"{path}: {err['msg']}" if path else err["msg"], param=path or None,
                             code="invalid_value") from None
