"""The key ring: every virtual key's digest → `Principal`, in memory, kept fresh by a poll thread.

    ring = KeyRing(store, poll_interval=0.25)    # loads once (start-up), then polls in the background
    ring.lookup(digest)                          # O(1) dict lookup; raises AuthenticationFailed
    ring.refresh_soon()                          # after a local write: reload now, not at the next tick

The hot path never touches the database. The poll thread reads one number (`key_ring_version`) every
`poll_interval` seconds; when another replica (or the CLI) changed anything, it reads only the rows
stamped with a newer version, applies them to a copy of the lookup maps and swaps the copy in with one
reference assignment — so a revocation stops working everywhere within poll_interval plus a few ms,
however many keys there are. If the database is unreachable the last good ring keeps serving (logged).

A key's Principal carries its own budgets and limits plus its user's and its team's (scopes "key:<id>",
"user:<id>", "team:<id>"); its allowed models are the intersection of the key's, user's and team's
lists (a missing list allows every model).
"""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal
from typing import Any

from hedgeway.errors import AuthenticationFailed
from hedgeway.keys.store import KINDS, KeyStore
from hedgeway.types import Budget, Principal, RateLimit

log = logging.getLogger("hedgeway.keys")
_NEVER = float("inf")
_RETIRED = {"rotated": "This API key has been rotated; use the new key.",
            "revoked": "This API key has been revoked."}


def _caps(scope: str, row: dict[str, Any]) -> tuple[list[Budget], list[RateLimit]]:
    budgets = [Budget(scope, Decimal(b["limit"]), b["period"]) for b in row["budgets"]]
    lim = row["limits"]
    limits = [RateLimit(scope, lim.get("rpm"), lim.get("tpm"))] if lim else []
    return budgets, limits


def principal(key: dict[str, Any], user: dict[str, Any] | None, team: dict[str, Any] | None) -> Principal:
    """The Principal a key row authenticates as, with its user's and team's caps folded in."""
    budgets: list[Budget] = []
    limits: list[RateLimit] = []
    models: frozenset[str] | None = None
    for scope, row in ((f"key:{key['id']}", key), (f"user:{key['user_id']}", user),
                       (f"team:{key['team_id']}", team)):
        if row is None:
            continue
        b, lim = _caps(scope, row)
        budgets += b
        limits += lim
        if row["models"] is not None:
            allowed = frozenset(row["models"])
            models = allowed if models is None else models & allowed
    return Principal(key_id=key["id"], team=key["team_id"], user=key["user_id"], models=models,
                     budgets=tuple(budgets), limits=tuple(limits), metadata=key["metadata"] or None)


class KeyRing:
    def __init__(self, store: KeyStore, poll_interval: float = 0.25):
        self.store = store
        self.poll_interval = poll_interval
        self.version = -1
        self.reloads = 0
        self.healthy = True
        self._active: dict[bytes, tuple[Principal, float]] = {}  # digest -> (Principal, expires_at)
        self._refused: dict[bytes, str] = {}  # digest -> why (revoked, rotated)
        # The rows the maps were built from; touched only under _reload_lock, never by readers.
        self._keys: dict[str, dict[str, Any]] = {}
        self._owners: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self._wake = threading.Event()
        self._stop = False
        self._reload_lock = threading.Lock()
        self.reload()  # at start-up, synchronously: a gateway must never serve with an empty ring
        self._thread = threading.Thread(target=self._run, name="hedgeway-keyring", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self._active)

    def users(self) -> dict[str, str | None]:
        """Key id -> its user's id, for every key loaded (revoked ones too: what they spent still counts)."""
        return {key_id: row["user_id"] for key_id, row in self._keys.items()}

    def lookup(self, digest: bytes) -> Principal | None:
        """The Principal for a key digest; None if no virtual key has it; AuthenticationFailed (saying
        why, never echoing the key) if it is revoked, rotated or expired."""
        entry = self._active.get(digest)
        if entry is not None:
            p, expires_at = entry
            if time.time() < expires_at:
                return p
            raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
        reason = self._refused.get(digest)
        if reason is not None:
            raise AuthenticationFailed(reason, code="revoked_api_key")
        return None

    def reload(self) -> None:
        """Apply what changed in the database since the loaded version (the poll thread, start-up, or an
        admin write that wants its own replica to see the change before it answers)."""
        with self._reload_lock:
            snap = self.store.snapshot(self.version)
            if snap["version"] <= self.version:
                return
            self._apply(snap)
            self.version = snap["version"]
            self.reloads += 1

    def _apply(self, snap: dict[str, Any]) -> None:
        active, refused = dict(self._active), dict(self._refused)  # copy-on-write: readers never wait
        users, teams = self._owners["users"], self._owners["teams"]
        for kind in KINDS:
            self._owners[kind].update(snap[kind])
        for d, reason in snap["retired"].items():
            digest = bytes.fromhex(d)
            active.pop(digest, None)
            refused[digest] = _RETIRED.get(reason, _RETIRED["revoked"])
        affected = {row["id"]: row for row in snap["keys"]}
        for row in snap["keys"]:
            old = self._keys.get(row["id"])
            if old is not None and old["digest"] != row["digest"]:
                active.pop(bytes.fromhex(old["digest"]), None)
            self._keys[row["id"]] = row
        if snap["users"] or snap["teams"]:  # an owner's caps changed: rebuild its keys' Principals
            for row in self._keys.values():
                if row["user_id"] in snap["users"] or row["team_id"] in snap["teams"]:
                    affected[row["id"]] = row
        for row in affected.values():
            digest = bytes.fromhex(row["digest"])
            if row["revoked_at"] is not None:
                active.pop(digest, None)
                refused[digest] = _RETIRED["revoked"]
            else:
                p = principal(row, users.get(row["user_id"]), teams.get(row["team_id"]))
                active[digest] = (p, row["expires_at"] if row["expires_at"] is not None else _NEVER)
        self._active, self._refused = active, refused  # readers see the old maps or the new, never a mix

    def refresh_soon(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            if self._stop:
                return
            try:
                if self.store.version() != self.version:
                    self.reload()
                if not self.healthy:
                    log.info("key ring: database reachable again")
                self.healthy = True
            except Exception as exc:  # keep serving the last good ring; say so once per outage
                if self.healthy:
                    log.error("key ring: cannot poll the database (%s); serving the last loaded keys",
                              type(exc).__name__)
                self.healthy = False

    def close(self) -> None:
        self._stop = True
        self._wake.set()
        self._thread.join(5)
        self.store.close()
