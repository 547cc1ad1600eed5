"""Virtual keys, users and teams: stored hashed in the ledger database (`store`), served from memory
(`ring`), managed through the admin API (hedgeway.http.admin) and the CLI (`hedgeway keys|teams|users`).

    ring = open_ring(config)      # None when auth is disabled; Authenticator(…, ring=ring)
"""

from __future__ import annotations

from typing import Any

from hedgeway.keys.ring import KeyRing
from hedgeway.keys.store import KeyStore

__all__ = ["KeyRing", "KeyStore", "open_ring"]


def open_ring(config: Any, poll_interval: float = 0.25) -> KeyRing | None:
    """The key ring on the config's ledger database (migrated), loaded and polling; None without auth."""
    if config.auth.disabled:
        return None
    store = KeyStore(config.ledger.url)
    try:
        store.migrate()
        return KeyRing(store, poll_interval)
    except BaseException:
        store.close()
        raise
