"""Virtual keys, users and teams in the ledger database (tables from migration 003_keys_users_teams).

A key's secret is generated here, returned once by `create_key`/`rotate_key`, and never stored: the
table keeps its SHA-256 digest (what `Authenticator` looks up) and a short non-secret prefix for display.
Every write bumps `key_ring_version` in the same transaction and stamps the rows it touches with the new
value (`version` column); `KeyRing` polls that one number and then reads only rows with a newer stamp.
Writers are serialized by the version row's lock, so versions commit in order.

Rows come back as plain dicts (JSON-ready; money as strings, times as epoch seconds). Mistakes a
client can make (unknown id, unknown user/team, deleting an owner that still has live keys) raise
`NotFound` / `InvalidRequest`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from hedgeway.errors import InvalidRequest, NotFound
from hedgeway.keys.db import open_db
from hedgeway.keys.schema import KeyCreate, KeyUpdate, OwnerCreate, OwnerUpdate

SECRET_PREFIX = "sk-hw-"
DISPLAY_CHARS = 10  # "sk-hw-" + 4 random characters: enough to tell keys apart, far too few to guess one
KINDS = ("users", "teams")  # owner tables
_CAPS = ("models", "budgets", "limits", "metadata")
_OWNER_COLS = ("id", *_CAPS, "created_at", "updated_at")
_KEY_COLS = ("id", "prefix", "name", "user_id", "team_id", *_CAPS, "expires_at", "created_at",
             "updated_at", "revoked_at")
_JSON_DEFAULTS = {"models": None, "budgets": [], "limits": None, "metadata": {}}


def hex_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _dump(field: str, value: Any) -> str | None:
    if field == "budgets":
        value = [{"limit": format(b.limit, "f"), "period": b.period} for b in value or ()]
    elif field == "limits":
        value = value.model_dump() if value is not None and (value.rpm or value.tpm) else None
    elif value is None:
        value = _JSON_DEFAULTS[field]
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _row(cols: tuple[str, ...], values: tuple) -> dict[str, Any]:
    row = dict(zip(cols, values))
    for field in _CAPS:
        text = row.get(field)
        row[field] = json.loads(text) if text is not None else _JSON_DEFAULTS[field]
    return row


def key_status(row: dict[str, Any], now: float | None = None) -> str:
    if row["revoked_at"] is not None:
        return "revoked"
    if row["expires_at"] is not None and (time.time() if now is None else now) >= row["expires_at"]:
        return "expired"
    return "active"


class KeyStore:
    def __init__(self, url: str):
        self.db = open_db(url)
        self.dialect = self.db.dialect

    def migrate(self) -> None:
        self.db.migrate()

    def close(self) -> None:
        self.db.close()

    # --- ring ---
    def version(self) -> int:
        return self.db.read(lambda q: q("SELECT version FROM key_ring_version").fetchone()[0])

    def snapshot(self, since: int = -1) -> dict[str, Any]:
        """What the ring needs, from one consistent read: the version now, and the keys (with digests),
        users, teams and retired digests written after version `since` (everything by default)."""
        def go(q) -> dict[str, Any]:
            version = q("SELECT version FROM key_ring_version").fetchone()[0]
            keys = []
            for values in q(f"SELECT digest, {', '.join(_KEY_COLS)} FROM keys WHERE version > ?",
                            (since,)).fetchall():
                row = _row(_KEY_COLS, values[1:])
                row["digest"] = values[0]
                keys.append(row)
            owners = {kind: {r[0]: _row(_OWNER_COLS, r) for r in q(
                f"SELECT {', '.join(_OWNER_COLS)} FROM {kind} WHERE version > ?", (since,)).fetchall()}
                for kind in KINDS}
            retired = dict(q("SELECT digest, reason FROM retired_digests WHERE version > ?", (since,)).fetchall())
            return {"version": version, "keys": keys, **owners, "retired": retired}
        return self.db.read(go)

    @staticmethod
    def _bump(q) -> int:
        """The next version (taking the version row's lock until commit: writers go one at a time)."""
        q("UPDATE key_ring_version SET version = version + 1 WHERE id = 1")
        return q("SELECT version FROM key_ring_version WHERE id = 1").fetchone()[0]

    # --- users and teams ---
    def create_owner(self, kind: str, spec: OwnerCreate) -> dict[str, Any]:
        now = time.time()

        def go(q):
            if q(f"SELECT 1 FROM {kind} WHERE id = ?", (spec.id,)).fetchone():
                raise InvalidRequest(f"{kind[:-1]} {spec.id!r} already exists", param="id", code="already_exists")
            q(f"INSERT INTO {kind} ({', '.join(_OWNER_COLS)}, version) VALUES "
              f"({', '.join('?' * (len(_OWNER_COLS) + 1))})",
              (spec.id, *(_dump(f, getattr(spec, f)) for f in _CAPS), now, now, self._bump(q)))
            return self._owner(q, kind, spec.id)
        return self.db.write(go)

    def _owner(self, q, kind: str, owner_id: str) -> dict[str, Any]:
        values = q(f"SELECT {', '.join(_OWNER_COLS)} FROM {kind} WHERE id = ?", (owner_id,)).fetchone()
        if values is None:
            raise NotFound(f"no {kind[:-1]} {owner_id!r}", code=f"{kind[:-1]}_not_found")
        return _row(_OWNER_COLS, values)

    def get_owner(self, kind: str, owner_id: str) -> dict[str, Any]:
        return self.db.read(lambda q: self._owner(q, kind, owner_id))

    def list_owners(self, kind: str) -> list[dict[str, Any]]:
        return self.db.read(lambda q: [_row(_OWNER_COLS, r) for r in q(
            f"SELECT {', '.join(_OWNER_COLS)} FROM {kind} ORDER BY id").fetchall()])

    def update_owner(self, kind: str, owner_id: str, spec: OwnerUpdate) -> dict[str, Any]:
        changes = {f: _dump(f, getattr(spec, f)) for f in _CAPS if f in spec.model_fields_set}

        def go(q):
            self._owner(q, kind, owner_id)
            self._update(q, kind, owner_id, changes)
            return self._owner(q, kind, owner_id)
        return self.db.write(go)

    def delete_owner(self, kind: str, owner_id: str) -> None:
        """Refused while a live (unrevoked) key belongs to the owner: deleting it would silently lift
        the owner's budgets and limits from those keys. Revoked keys are detached."""
        column = "user_id" if kind == "users" else "team_id"

        def go(q):
            self._owner(q, kind, owner_id)
            live = q(f"SELECT count(*) FROM keys WHERE {column} = ? AND revoked_at IS NULL",
                     (owner_id,)).fetchone()[0]
            if live:
                raise InvalidRequest(f"{kind[:-1]} {owner_id!r} still has {live} active key(s); revoke them "
                                     "first", code="owner_has_keys")
            q(f"UPDATE keys SET {column} = NULL, version = ? WHERE {column} = ?", (self._bump(q), owner_id))
            q(f"DELETE FROM {kind} WHERE id = ?", (owner_id,))
        self.db.write(go)

    def _update(self, q, table: str, row_id: str, changes: dict[str, Any]) -> None:
        # Column names come from the schema models' fixed field lists, never from the client.
        changes = {**changes, "updated_at": time.time(), "version": self._bump(q)}
        q(f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in changes)} WHERE id = ?", (*changes.values(), row_id))

    # --- keys ---
    def _check_owners(self, q, user: str | None, team: str | None) -> None:
        for kind, owner_id in (("users", user), ("teams", team)):
            if owner_id is not None and not q(f"SELECT 1 FROM {kind} WHERE id = ?", (owner_id,)).fetchone():
                raise InvalidRequest(f"no {kind[:-1]} {owner_id!r}: create it first", param=kind[:-1],
                                     code=f"{kind[:-1]}_not_found")

    def _key(self, q, key_id: str) -> dict[str, Any]:
        values = q(f"SELECT {', '.join(_KEY_COLS)} FROM keys WHERE id = ?", (key_id,)).fetchone()
        if values is None:
            raise NotFound(f"no key {key_id!r}", code="key_not_found")
        return _row(_KEY_COLS, values)

    def create_key(self, spec: KeyCreate) -> tuple[dict[str, Any], str]:
        """(the new key's row, its secret). The secret exists only in this return value."""
        secret, key_id, now = new_secret(), "key_" + secrets.token_hex(8), time.time()
        values = (key_id, hex_digest(secret), secret[:DISPLAY_CHARS], spec.name, spec.user, spec.team,
                  *(_dump(f, getattr(spec, f)) for f in _CAPS), spec.expires_at, now, now)
        cols = ("id", "digest", "prefix", "name", "user_id", "team_id", *_CAPS, "expires_at", "created_at",
                "updated_at", "version")

        def go(q):
            self._check_owners(q, spec.user, spec.team)
            q(f"INSERT INTO keys ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", (*values, self._bump(q)))
            return self._key(q, key_id)
        return self.db.write(go), secret

    def get_key(self, key_id: str) -> dict[str, Any]:
        return self.db.read(lambda q: self._key(q, key_id))

    def list_keys(self, user: str | None = None, team: str | None = None) -> list[dict[str, Any]]:
        where, params = [], []
        for column, value in (("user_id", user), ("team_id", team)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {', '.join(_KEY_COLS)} FROM keys"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, id"
        return self.db.read(lambda q: [_row(_KEY_COLS, r) for r in q(sql, tuple(params)).fetchall()])

    def update_key(self, key_id: str, spec: KeyUpdate) -> dict[str, Any]:
        sent = spec.model_fields_set
        changes = {f: _dump(f, getattr(spec, f)) for f in _CAPS if f in sent}
        for field, column in (("name", "name"), ("user", "user_id"), ("team", "team_id"),
                              ("expires_at", "expires_at")):
            if field in sent:
                changes[column] = getattr(spec, field)

        def go(q):
            if self._key(q, key_id)["revoked_at"] is not None:
                raise InvalidRequest(f"key {key_id!r} is revoked; create a new one", code="key_revoked")
            self._check_owners(q, changes.get("user_id"), changes.get("team_id"))
            self._update(q, "keys", key_id, changes)
            return self._key(q, key_id)
        return self.db.write(go)

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Idempotent: revoking a revoked key keeps its first revocation time."""
        def go(q):
            if self._key(q, key_id)["revoked_at"] is None:
                now = time.time()
                q("UPDATE keys SET revoked_at = ?, updated_at = ?, version = ? WHERE id = ?",
                  (now, now, self._bump(q), key_id))
            return self._key(q, key_id)
        return self.db.write(go)

    def rotate_key(self, key_id: str) -> tuple[dict[str, Any], str]:
        """A new secret for the same key (same id, owners, caps and spend); the old secret stops working
        (its digest is kept in retired_digests so the gateway can say it was rotated)."""
        secret, now = new_secret(), time.time()

        def go(q):
            if self._key(q, key_id)["revoked_at"] is not None:
                raise InvalidRequest(f"key {key_id!r} is revoked; create a new one", code="key_revoked")
            old = q("SELECT digest FROM keys WHERE id = ?", (key_id,)).fetchone()[0]
            version = self._bump(q)
            q("INSERT INTO retired_digests (digest, key_id, reason, retired_at, version) VALUES (?, ?, ?, ?, ?)",
              (old, key_id, "rotated", now, version))
            q("UPDATE keys SET digest = ?, prefix = ?, updated_at = ?, version = ? WHERE id = ?",
              (hex_digest(secret), secret[:DISPLAY_CHARS], now, version, key_id))
            return self._key(q, key_id)
        return self.db.write(go), secret
