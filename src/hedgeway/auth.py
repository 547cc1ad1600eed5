"""Authentication: a presented key → `Principal`, or `AuthenticationFailed` (401).

Keys are compared by SHA-256 digest in constant time; the key itself is never stored in a Principal,
logged or echoed. Virtual keys (teams, budgets) plug in here as another lookup of the same digest.
"""

from __future__ import annotations

import hashlib
import hmac

from hedgeway.errors import AuthenticationFailed
from hedgeway.types import Principal

ANONYMOUS = Principal(key_id="anonymous")
MASTER = Principal(key_id="master")


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def bearer(authorization: str | None, api_key: str | None = None) -> str | None:
    """The key from `Authorization: Bearer …`, else from `x-api-key` (Anthropic SDK style)."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return api_key or None


class Authenticator:
    def __init__(self, master_key: str | None, disabled: bool = False):
        self.disabled = disabled
        self._master = digest(master_key) if master_key else None

    def authenticate(self, key: str | None) -> Principal:
        if self.disabled:
            return ANONYMOUS
        if not key:
            raise AuthenticationFailed("Missing API key: send it as 'Authorization: Bearer <key>'.")
        if self._master is not None and hmac.compare_digest(digest(key), self._master):
            return MASTER
        raise AuthenticationFailed("Incorrect API key provided.")
