"""Authentication: a presented key → `Principal`, or `AuthenticationFailed` (401).

Keys are compared by SHA-256 digest; the key itself is never stored in a Principal, logged or echoed.
The master key is compared in constant time; virtual keys are then looked up by the same digest in the
in-memory `KeyRing` (hedgeway.keys.ring) — a dict lookup keyed by a hash, which leaks nothing a caller
could use (they cannot choose digests). No database I/O happens here.
"""

from __future__ import annotations

import hashlib
import hmac

from typing import TYPE_CHECKING

from hedgeway.errors import AuthenticationFailed
from hedgeway.types import Principal

if TYPE_CHECKING:
    from hedgeway.keys.ring import KeyRing

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
    def __init__(self, master_key: str | None, disabled: bool = False, ring: "KeyRing | None" = None):
        self.disabled = disabled
        self.ring = ring
        self._master = digest(master_key) if master_key else None

    def authenticate(self, key: str | None) -> Principal:
        if self.disabled:
            return ANONYMOUS
        if not key:
            raise AuthenticationFailed("Missing API key: send it as 'Authorization: Bearer <key>'.")
        d = digest(key)
        if self._master is not None and hmac.compare_digest(d, self._master):
            return MASTER
        if self.ring is not None:
            found = self.ring.lookup(d)  # raises for a revoked, rotated or expired key
            if found is not None:
                return found
        raise AuthenticationFailed("Incorrect API key provided.")
