"""One named migration step (see hedgeway.ledger.migrations)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    statements: tuple[str, ...]
