"""The `limits:` config section (budgets, rate limits, their backend and alerts)."""

from __future__ import annotations

from hedgeway.strict import Strict


class LimitsIn(Strict):
    """Placeholder until the limits backends land: no global budgets or limits."""
