"""`hedgeway users create|list|update|delete`: the same command as `teams`, over users."""

from __future__ import annotations

import argparse

from hedgeway.cli.teams import register_owner


def register(sub: argparse._SubParsersAction) -> None:
    register_owner(sub, "users")
