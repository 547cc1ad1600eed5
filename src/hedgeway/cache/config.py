"""The `cache:` config section."""

from __future__ import annotations

from hedgeway.strict import Strict


class CacheIn(Strict):
    """Placeholder until the cache lands: caching off."""

    enabled: bool = False
